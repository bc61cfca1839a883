"""CPU timings to choose model sizes: decoder ms per prompt (paper decoder vs a reduced one, PyTorch
and onnxruntime) and seconds per training step (tiny encoder, batch 4, full and decoder-only).

Prints the best of --repeats runs and ratios against the paper decoder measured in the same process;
the machine's load average is printed too, since a shared machine skews absolute numbers.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Dict

import numpy as np
import torch

from .data import synthetic_shapes, write_coco
from .model import ModelConfig, PromptDecoder, build_sam

DECODERS: Dict[str, Dict[str, int]] = {
    "paper (mlp 2048, iou 256)": dict(transformer_mlp_dim=2048, iou_head_hidden_dim=256),
    "reduced (mlp 512, iou 128)": dict(transformer_mlp_dim=512, iou_head_hidden_dim=128),
}


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocations, lazy init)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def prompt_inputs(batch: int, points: int = 3):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 256, 64, 64, generator=g),
            torch.rand(batch, points, 2, generator=g) * 1024,
            torch.tensor([[1.0] * (points - 1) + [-1.0]]).repeat(batch, 1),
            torch.zeros(batch, 1, 256, 256), torch.zeros(batch))


def bench_decoders(repeats: int) -> None:
    print("\n## decoder, ms per prompt (3 points, 1024 model, 64x64 embedding)")
    from .export import export_batched_decoder, export_decoder
    import onnxruntime as ort

    reference = None
    for name, sizes in DECODERS.items():
        torch.manual_seed(0)
        sam = build_sam(ModelConfig(**sizes)).eval()
        decoder = PromptDecoder(sam)
        row = {}
        with torch.no_grad():
            row["torch B=1"] = best_time(lambda: decoder(*prompt_inputs(1)), repeats) * 1e3
            row["torch B=16 /prompt"] = best_time(lambda: decoder(*prompt_inputs(16)), repeats) / 16 * 1e3
        inputs = prompt_inputs(4)

        def fwd_bwd():
            iou, low = decoder(*inputs)
            (low.mean() + iou.mean()).backward()
        row["train fwd+bwd B=4 /prompt"] = best_time(fwd_bwd, repeats) / 4 * 1e3
        with tempfile.TemporaryDirectory() as d:
            export_decoder(sam, os.path.join(d, "dec.onnx"))
            export_batched_decoder(sam, os.path.join(d, "bat.onnx"))
            single = ort.InferenceSession(os.path.join(d, "dec.onnx"), providers=["CPUExecutionProvider"])
            batched = ort.InferenceSession(os.path.join(d, "bat.onnx"), providers=["CPUExecutionProvider"])
            emb, coords, labels, mask, has = (t.numpy() for t in prompt_inputs(1))
            feed = {"image_embeddings": emb, "point_coords": coords, "point_labels": labels,
                    "mask_input": mask, "has_mask_input": has,
                    "orig_im_size": np.array([768, 1024], np.float32)}
            row["onnx official B=1"] = best_time(lambda: single.run(None, feed), repeats) * 1e3
            emb, coords, labels, mask, has = (t.numpy() for t in prompt_inputs(64))
            bfeed = {"image_embeddings": emb, "point_coords": coords, "point_labels": labels,
                     "mask_input": mask, "has_mask_input": has}
            row["onnx batched B=64 /prompt"] = best_time(lambda: batched.run(None, bfeed), repeats) / 64 * 1e3
        reference = reference or row
        cells = ", ".join(f"{k}: {v:.1f} ms (x{v / reference[k]:.2f})" for k, v in row.items())
        print(f"- {name}: {cells}", flush=True)


# (mode, images, masks per image, corrective points, decoder): iterations = points + 3.
TRAIN_CASES = (
    ("full", 4, 2, 8, "paper (mlp 2048, iou 256)"),
    ("full", 4, 2, 8, "reduced (mlp 512, iou 128)"),
    ("decoder", 4, 2, 8, "paper (mlp 2048, iou 256)"),
    ("full", 4, 2, 2, "paper (mlp 2048, iou 256)"),
)


def bench_training(repeats: int) -> None:
    print("\n## training step, tiny encoder, 1024 model (s/step; cost ~ images x masks x iterations)")
    from .train import Trainer
    from .train_config import TrainConfig

    with tempfile.TemporaryDirectory() as d:
        images, masks = synthetic_shapes(8, size=(480, 640), max_objects=8, seed=0)
        write_coco(os.path.join(d, "data"), images, masks)
        reference = None
        for mode, batch, per_image, points, sizes in TRAIN_CASES:
            cfg = TrainConfig(data_dir=os.path.join(d, "data"), out_dir=os.path.join(d, mode),
                              model=ModelConfig(**DECODERS[sizes]), mode=mode, batch_size=batch,
                              masks_per_image=per_image, num_points=points, resume=False,
                              warmup_steps=1)
            trainer = Trainer(cfg)
            seconds = best_time(trainer.train_step, repeats)
            reference = reference or seconds
            passes = batch * per_image * (points + 3)
            print(f"- {mode}, {batch} images x {per_image} masks x {points + 3} iterations, "
                  f"decoder {sizes}: {seconds:.2f} s/step (x{seconds / reference:.2f}), "
                  f"{seconds / passes * 1e3:.0f} ms per decoder pass", flush=True)


def bench_encoder(repeats: int) -> None:
    print("\n## tiny encoder, 1x3x1024x1024")
    sam = build_sam(ModelConfig()).eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        fwd = best_time(lambda: sam.image_encoder(x), repeats)
    print(f"- forward: {fwd * 1e3:.0f} ms")


def bench_detectors(repeats: int) -> None:
    """What stage 2's detector costs: the head on SAM's embedding (detector.py) against torchvision's
    Faster R-CNNs (the paper's kind), untrained (weights do not change the cost), one 1024 image."""
    print("\n## box detectors, one 1024x1024 image (ms; ratios against the head on the embedding)")
    import torchvision
    from .detector import BoxHead, DetectorConfig, detector_loss, make_targets, stack_targets

    head = BoxHead(DetectorConfig())
    emb = torch.randn(16, 256, 64, 64)
    targets = stack_targets([make_targets(np.array([[100.0, 100.0, 300.0, 400.0]]), 64)] * 16)

    def head_step():
        detector_loss(head(emb), targets)["loss"].backward()
    with torch.no_grad():
        head_fwd = best_time(lambda: head(emb[:1]), repeats) * 1e3
    head_train = best_time(head_step, repeats) / 16 * 1e3
    rows = [("head on the SAM embedding", sum(p.numel() for p in head.parameters()), head_fwd, head_train)]
    image = [torch.rand(3, 1024, 1024)]
    boxes = [{"boxes": torch.tensor([[100.0, 100.0, 300.0, 400.0]] * 5), "labels": torch.ones(5, dtype=torch.int64)}]
    for name, build in (("Faster R-CNN MobileNetV3-FPN", torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn),
                        ("Faster R-CNN ResNet-50-FPN", torchvision.models.detection.fasterrcnn_resnet50_fpn)):
        model = build(weights=None, weights_backbone=None, num_classes=2, min_size=1024, max_size=1024)
        model.eval()
        with torch.no_grad():
            fwd = best_time(lambda: model(image), max(1, repeats - 2)) * 1e3
        model.train()

        def step():
            sum(model(image, boxes).values()).backward()
        train = best_time(step, max(1, repeats - 2)) * 1e3
        rows.append((name, sum(p.numel() for p in model.parameters()), fwd, train))
    _, _, ref_fwd, ref_train = rows[0]
    for name, params, fwd, train in rows:
        print(f"- {name}: {params / 1e6:.2f}M parameters, inference {fwd:.1f} ms (x{fwd / ref_fwd:.0f}), "
              f"training {train:.1f} ms per image (x{train / ref_train:.0f})", flush=True)
    print("  (the head also needs SAM's embedding, which stage 2 computes for the decoder anyway)")


def main(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.detectors:
        bench_detectors(args.repeats)
    else:
        bench_encoder(args.repeats)
        bench_decoders(args.repeats)
        bench_training(max(1, args.repeats - 2))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
