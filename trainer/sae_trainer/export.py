"""Export a SAM checkpoint (ours, or an official one) to a model package for the TS runtime:

  encoder.onnx          input_image (1,3,S,S) float32, normalised + padded (preprocessing NOT in
                        graph) -> image_embeddings (1,256,S/16,S/16)
  decoder.onnx          the official decoder contract exactly (sam-spec §2a; SamOnnxModel,
                        return_single_mask=False, opset 17, dynamic num_points)
  decoder_batched.onnx  B prompts on one embedding -> iou_predictions (B,4), low_res_masks (B,4,...)
  decoder_folded.onnx   decoder_batched's contract, its cross attentions computed on the prompt
                        tokens' side (folded_attention.py): the same masks at 0.57 of the multiply-adds
                        for a one-point prompt; the TypeScript runtime uses it in place of both
  model.json            names, shapes, layouts, lineage, metrics, ONNX-vs-PyTorch differences

`python -m sae_trainer export --checkpoint sam_vit_b_01ec64.pth --encoder vit_b --out DIR` converts
an official checkpoint to the same package.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any, Dict, Optional

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.onnx import SamOnnxModel

from .folded_attention import fold_attention
from .model import PIXEL_MEAN, PIXEL_STD, ModelConfig, PromptDecoder, load_checkpoint

OPSET = 17
FORMAT = "sa-engine-model/1"
ENCODER_FILE, DECODER_FILE, BATCHED_FILE = "encoder.onnx", "decoder.onnx", "decoder_batched.onnx"
FOLDED_FILE = "decoder_folded.onnx"
DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input",
                  "has_mask_input", "orig_im_size"]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]
BATCHED_INPUTS = DECODER_INPUTS[:-1]
BATCHED_OUTPUTS = ["iou_predictions", "low_res_masks"]


class EncoderOnnx(torch.nn.Module):
    """The image encoder alone, so the graph's input/output names are ours."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(input_image)


def _shapes(sam: Sam) -> Dict[str, Any]:
    size = sam.image_encoder.img_size
    emb = sam.prompt_encoder.image_embedding_size[0]
    return {"size": size, "emb": emb, "low": 4 * emb, "dim": sam.prompt_encoder.embed_dim,
            "masks": sam.mask_decoder.num_mask_tokens}


def _onnx_export(module: torch.nn.Module, args: tuple, path: str, input_names, output_names,
                 dynamic_axes: Optional[dict], opset: int) -> None:
    with warnings.catch_warnings():
        # Tracing warnings about Python ints from tensor shapes: expected, as in the official script.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        with torch.no_grad():
            torch.onnx.export(module, args, path, export_params=True, verbose=False,
                              opset_version=opset, do_constant_folding=True,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, dynamo=False)


# --- the three graphs --------------------------------------------------------------------------

def decoder_example_inputs(sam: Sam, num_points: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Inputs for the official decoder graph (as scripts/export_onnx_model.py builds them)."""
    s = _shapes(sam)
    g = torch.Generator().manual_seed(seed)
    return {
        "image_embeddings": torch.randn(1, s["dim"], s["emb"], s["emb"], generator=g),
        "point_coords": torch.randint(0, s["size"], (1, num_points, 2), generator=g).float(),
        "point_labels": torch.randint(0, 4, (1, num_points), generator=g).float(),
        "mask_input": torch.randn(1, 1, s["low"], s["low"], generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]) * s["size"] / 1024,
    }


def batched_example_inputs(sam: Sam, num_prompts: int, num_points: int,
                           seed: int = 0) -> Dict[str, torch.Tensor]:
    s = _shapes(sam)
    g = torch.Generator().manual_seed(seed)
    return {
        "image_embeddings": torch.randn(1, s["dim"], s["emb"], s["emb"], generator=g),
        "point_coords": torch.randint(0, s["size"], (num_prompts, num_points, 2), generator=g).float(),
        "point_labels": torch.randint(-1, 2, (num_prompts, num_points), generator=g).float(),
        "mask_input": torch.randn(num_prompts, 1, s["low"], s["low"], generator=g),
        "has_mask_input": (torch.arange(num_prompts) % 2).float(),
    }


def export_decoder(sam: Sam, path: str, opset: int = OPSET) -> None:
    inputs = decoder_example_inputs(sam, num_points=5)
    dynamic = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    _onnx_export(SamOnnxModel(sam, return_single_mask=False), tuple(inputs.values()), path,
                 DECODER_INPUTS, DECODER_OUTPUTS, dynamic, opset)


def export_batched_decoder(sam: Sam, path: str, opset: int = OPSET) -> None:
    _export_prompt_decoder(PromptDecoder(sam), sam, path, opset)


def export_folded_decoder(sam: Sam, path: str, opset: int = OPSET) -> None:
    _export_prompt_decoder(PromptDecoder(fold_attention(sam)), sam, path, opset)


def _export_prompt_decoder(decoder: PromptDecoder, sam: Sam, path: str, opset: int) -> None:
    inputs = batched_example_inputs(sam, num_prompts=3, num_points=5)
    prompts = {0: "num_prompts"}
    dynamic = {"point_coords": {0: "num_prompts", 1: "num_points"},
               "point_labels": {0: "num_prompts", 1: "num_points"},
               "mask_input": prompts, "has_mask_input": prompts,
               "iou_predictions": prompts, "low_res_masks": prompts}
    _onnx_export(decoder, tuple(inputs.values()), path, BATCHED_INPUTS, BATCHED_OUTPUTS, dynamic,
                 opset)


def export_encoder(sam: Sam, path: str, opset: int = OPSET) -> None:
    size = sam.image_encoder.img_size
    _onnx_export(EncoderOnnx(sam), (torch.randn(1, 3, size, size),), path, ["input_image"],
                 ["image_embeddings"], None, opset)


# --- ONNX vs PyTorch ---------------------------------------------------------------------------

def _session(path: str):
    import onnxruntime as ort
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _max_diff(onnx_out: list, torch_out: tuple) -> float:
    return max(float(np.abs(o - t.numpy()).max()) for o, t in zip(onnx_out, torch_out))


def check_decoder(sam: Sam, path: str) -> float:
    """Max |ONNX - PyTorch| over all outputs, for two prompt lengths (num_points is dynamic)."""
    session, model, diff = _session(path), SamOnnxModel(sam, return_single_mask=False), 0.0
    for n in (2, 7):
        inputs = decoder_example_inputs(sam, num_points=n, seed=n)
        out = session.run(DECODER_OUTPUTS, {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            diff = max(diff, _max_diff(out, model(*inputs.values())))
    return diff


def check_batched_decoder(sam: Sam, path: str) -> float:
    """Max |ONNX - PyTorch's official decoder| (so for the folded graph, folding's own rounding too)."""
    session, model, diff = _session(path), PromptDecoder(sam), 0.0
    for b, n in ((1, 2), (4, 3), (1, 11)):
        inputs = batched_example_inputs(sam, num_prompts=b, num_points=n, seed=b)
        out = session.run(BATCHED_OUTPUTS, {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            diff = max(diff, _max_diff(out, model(*inputs.values())))
    return diff


def check_encoder(sam: Sam, path: str) -> float:
    size = sam.image_encoder.img_size
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    out = _session(path).run(["image_embeddings"], {"input_image": x.numpy()})
    with torch.no_grad():
        return _max_diff(out, (sam.image_encoder(x),))


# --- model.json --------------------------------------------------------------------------------

def _io(name: str, shape: list, meaning: str, dtype: str = "float32") -> Dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "meaning": meaning}


def describe_package(sam: Sam, cfg: ModelConfig, batched: bool, folded: bool = True) -> Dict[str, Any]:
    """The static part of model.json: files, names, shapes, layouts."""
    s = _shapes(sam)
    size, emb, low, dim, c = s["size"], s["emb"], s["low"], s["dim"], s["masks"]
    prompt_inputs = [
        _io("point_coords", ["num_prompts" if batched else 1, "num_points", 2],
            f"(x, y) in the {size}x{size} model frame: original pixel coords scaled by the "
            "resize-longest-side ratios (sam-spec §1)"),
        _io("point_labels", ["num_prompts" if batched else 1, "num_points"],
            "1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding; with no box append a "
            "padding point (0,0)/-1; with a box put points first, then its 2 corners"),
        _io("mask_input", ["num_prompts" if batched else 1, 1, low, low],
            "previous low_res_masks logits, or zeros"),
        _io("has_mask_input", ["num_prompts" if batched else 1], "1 if mask_input is given, else 0"),
    ]
    embedding = _io("image_embeddings", [1, dim, emb, emb], "encoder output")
    decoder = {
        "file": DECODER_FILE,
        "contract": "segment-anything SamOnnxModel (return_single_mask=False)",
        "opset": OPSET,
        "accepts_prompt_batch": False,
        "inputs": [embedding, *prompt_inputs,
                   _io("orig_im_size", [2], "[H, W] of the image before resizing")],
        "outputs": [
            _io("masks", [1, c, "H", "W"], "mask logits at orig_im_size; threshold > 0.0"),
            _io("iou_predictions", [1, c], "predicted IoU per mask"),
            _io("low_res_masks", [1, c, low, low], "logits before upsampling"),
        ],
        "single_mask_index": 0,
        "multimask_indices": list(range(1, c)),
    }
    package = {
        "format": FORMAT,
        "image_size": size,
        "embedding_shape": [1, dim, emb, emb],
        "mask_threshold": 0.0,
        "encoder": {
            "file": ENCODER_FILE,
            "arch": cfg.encoder,
            "opset": OPSET,
            "preprocess_in_graph": False,
            "input": _io("input_image", [1, 3, size, size],
                         "RGB, resized so the longest side is image_size (PIL bilinear), then "
                         "(x - pixel_mean) / pixel_std, then zero-padded bottom/right"),
            "input_layout": "NCHW",
            "color": "RGB",
            "pixel_mean": list(PIXEL_MEAN),
            "pixel_std": list(PIXEL_STD),
            "resize_longest_side": size,
            "padding": "bottom-right, zeros after normalisation",
            "output": _io("image_embeddings", [1, dim, emb, emb], "image embedding"),
        },
        "decoder": decoder,
        "decoder_accepts_prompt_batch": batched,
        "model_config": cfg.to_dict(),
    }
    def prompt_decoder(file: str, notes: str) -> Dict[str, Any]:
        return {
            "file": file,
            "opset": OPSET,
            "accepts_prompt_batch": True,
            "inputs": [embedding, *prompt_inputs],
            "outputs": [
                _io("iou_predictions", ["num_prompts", c], "predicted IoU per mask"),
                _io("low_res_masks", ["num_prompts", c, low, low],
                    "logits before upsampling; the caller upsamples like "
                    "Sam.postprocess_masks (bilinear to image_size, crop to the resized size, "
                    "bilinear to the original size, > 0.0)"),
            ],
            "notes": "num_prompts prompts on ONE image embedding, all with the same num_points "
                     "(pad shorter prompts with (0,0)/-1 points). Row b equals the single-prompt "
                     "decoder's iou_predictions/low_res_masks for prompt b." + notes,
            "single_mask_index": 0,
            "multimask_indices": list(range(1, c)),
        }

    if batched:
        package["decoder_batched"] = prompt_decoder(BATCHED_FILE, "")
    if folded:
        package["decoder_folded"] = prompt_decoder(
            FOLDED_FILE, " Cross attentions computed on the prompt tokens' side "
            "(trainer/sae_trainer/folded_attention.py): equal up to float rounding, fewer "
            "multiply-adds for prompts of up to 10 points (0.57 of them for one click), more beyond.")
    return package


def export_package(checkpoint: str, out_dir: str, encoder: Optional[str] = None,
                   batched: bool = True, folded: bool = True, check: bool = True,
                   name: Optional[str] = None,
                   version: Optional[str] = None, metrics: Optional[Dict[str, Any]] = None,
                   lineage: Optional[Dict[str, Any]] = None, log=print) -> Dict[str, Any]:
    """Write encoder.onnx, decoder.onnx (+ decoder_batched.onnx, decoder_folded.onnx) and model.json
    to out_dir."""
    sam, cfg, extra = load_checkpoint(checkpoint, encoder=encoder)
    if cfg.image_size != 1024:
        log(f"warning: image_size {cfg.image_size}: the graphs work, but the runtime contract "
            "(sam-spec §2) is a 1024 input and a 64x64 embedding")
    os.makedirs(out_dir, exist_ok=True)
    steps = [("decoder", export_decoder, check_decoder, DECODER_FILE),
             ("encoder", export_encoder, check_encoder, ENCODER_FILE)]
    if folded:
        steps.insert(1, ("decoder_folded", export_folded_decoder, check_batched_decoder,
                         FOLDED_FILE))
    if batched:
        steps.insert(1, ("decoder_batched", export_batched_decoder, check_batched_decoder,
                         BATCHED_FILE))
    parity: Dict[str, float] = {}
    for what, export_fn, check_fn, file in steps:
        t0 = time.time()
        path = os.path.join(out_dir, file)
        export_fn(sam, path)
        log(f"exported {what} -> {path} ({os.path.getsize(path) / 2**20:.1f} MiB, "
            f"{time.time() - t0:.1f}s)")
        if check:
            parity[what] = check_fn(sam, path)
            log(f"  ONNX vs PyTorch max abs diff ({what}): {parity[what]:.3g}")

    package = describe_package(sam, cfg, batched, folded)
    package.update(name=name, version=version)
    package["lineage"] = {**_lineage_from(checkpoint, extra), **(lineage or {})}
    package["metrics"] = metrics or {}
    package["parity"] = {"onnx_vs_pytorch_max_abs_diff": parity, "runtime": "onnxruntime CPU"}
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(package, f, indent=2)
    if metrics:
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
    return package


def _lineage_from(checkpoint: str, extra: Dict[str, Any]) -> Dict[str, Any]:
    if extra.get("official"):
        return {"parent": None, "source": "official segment-anything checkpoint",
                "checkpoint": os.path.basename(checkpoint)}
    info = dict(extra.get("lineage_info", {}))
    info.setdefault("steps", extra.get("step"))
    info["checkpoint"] = os.path.basename(checkpoint)
    return info
