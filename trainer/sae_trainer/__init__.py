"""sa-engine trainer: SAM models (official segment-anything modules), the paper's interactive training
simulation, held-out evaluation, and ONNX export to the TS runtime's model package."""
