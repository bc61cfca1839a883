"""Build the committed reference model package (models/sae-ref) from a training checkpoint:

1. round the weights to float16 and keep only them (no optimizer state), so the package fits the
   repository; the model is then *defined* by those rounded weights: PyTorch (checkpoint.pt) and
   ONNX (exported from the same rounded weights) hold identical values, which the AMG benchmark
   and parity check rely on;
2. evaluate it: held-out synthetic images (a seed never used in training) and, when given, the
   GrabCut photos converted by masks_to_coco.py; 1-click mIoU (best of 3 by predicted IoU), NoC@90;
3. export encoder.onnx, decoder.onnx, decoder_batched.onnx, decoder_folded.onnx and model.json
   with those metrics;
4. store the decoders' weights once: the graphs hold the very same tensors (the folded one a few
   of them re-laid out), so they point into one external data file, decoder_weights.bin
   (onnxruntime resolves it next to the model).

    PYTHONPATH=trainer python trainer/scripts/build_reference.py --checkpoint CKPT --out models/sae-ref \
        --heldout DIR [--real DIR] [--max-images N] [--max-masks-per-image N] [--recipe phases.json]

`--recipe` is a JSON list of the training phases (command, steps, what changed), kept in the
lineage of model.json so the package says how it was made; the lineage's steps are then their sum.
`--metrics FILE` reuses a metrics.json measured on the same checkpoint instead of evaluating again
(to re-export, e.g. after a lineage fix; the evaluation takes minutes).

`--add-folded` adds decoder_folded.onnx to a package built before it existed, from the package's
own checkpoint.pt, leaving every other file's bytes as they were (decoder_weights.bin only grows):

    PYTHONPATH=trainer python trainer/scripts/build_reference.py --add-folded --out models/sae-ref
"""
import argparse
import json
import os

import hashlib

import onnx
from onnx.external_data_helper import set_external_data

from sae_trainer.data import CocoInstances
from sae_trainer.evaluate import evaluate
from sae_trainer.export import (FOLDED_FILE, check_batched_decoder, describe_package,
                                export_folded_decoder, export_package)
from sae_trainer.model import DEVICES_HELP, compact_checkpoint, load_checkpoint, resolve_device


WEIGHTS_FILE = "decoder_weights.bin"
ALIGN = 4096


DECODER_FILES = ("decoder.onnx", "decoder_batched.onnx", FOLDED_FILE)


def share_decoder_weights(out_dir: str, files=DECODER_FILES) -> int:
    """Move every large initializer of the given models into one file, each distinct tensor once."""
    paths = [os.path.join(out_dir, name) for name in files]
    models = [onnx.load(path) for path in paths]
    offsets = {}
    with open(os.path.join(out_dir, WEIGHTS_FILE), "wb") as weights:
        for model in models:
            for tensor in model.graph.initializer:
                if len(tensor.raw_data) < 1024:
                    continue  # small constants stay inline
                key = (tensor.data_type, tuple(tensor.dims), hashlib.sha256(tensor.raw_data).hexdigest())
                if key not in offsets:
                    weights.write(b"\0" * (-weights.tell() % ALIGN))
                    offsets[key] = (weights.tell(), len(tensor.raw_data))
                    weights.write(tensor.raw_data)
                offset, length = offsets[key]
                set_external_data(tensor, location=WEIGHTS_FILE, offset=offset, length=length)
                tensor.ClearField("raw_data")
    for model, path in zip(models, paths):
        onnx.save_model(model, path)
    return len(offsets)


def add_folded_decoder(out_dir: str) -> None:
    """Export decoder_folded.onnx from out_dir/checkpoint.pt and describe it in model.json."""
    sam, cfg, _ = load_checkpoint(os.path.join(out_dir, "checkpoint.pt"))
    path = os.path.join(out_dir, FOLDED_FILE)
    export_folded_decoder(sam, path)
    diff = check_batched_decoder(sam, path)
    print(f"exported {path}; ONNX vs PyTorch's official decoder max abs diff {diff:.3g}")
    model_json = os.path.join(out_dir, "model.json")
    with open(model_json) as f:
        package = json.load(f)
    entry = describe_package(sam, cfg, batched=True, folded=True)["decoder_folded"]
    # Beside the other decoders, in model.json's order (amg_calibration stays last).
    package = {k: v for key, value in package.items() if key != "decoder_folded"
               for k, v in ([(key, value), ("decoder_folded", entry)] if key == "decoder_batched"
                            else [(key, value)])}
    package["parity"]["onnx_vs_pytorch_max_abs_diff"]["decoder_folded"] = diff
    with open(model_json, "w") as f:
        json.dump(package, f, indent=2)


def measure(checkpoint: str, args: argparse.Namespace) -> dict:
    sam, _, _ = load_checkpoint(checkpoint)
    sam.to(resolve_device(args.device))
    metrics = {"heldout_synthetic": evaluate(sam, CocoInstances(args.heldout), max_images=args.max_images,
                                             max_masks_per_image=args.max_masks_per_image)}
    metrics["heldout_synthetic"]["dataset"] = args.heldout_name
    if args.real:
        metrics["grabcut"] = evaluate(sam, CocoInstances(args.real))
        metrics["grabcut"]["dataset"] = "GrabCut (50 photos, human masks, unlabelled band ignored)"
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint")
    parser.add_argument("--add-folded", action="store_true",
                        help="only add decoder_folded.onnx to the package in --out")
    parser.add_argument("--out", required=True)
    parser.add_argument("--heldout")
    parser.add_argument("--real")
    parser.add_argument("--heldout-name", default="sa-engine synth --images 100 --seed 7777")
    parser.add_argument("--max-images", type=int, default=25)
    parser.add_argument("--max-masks-per-image", type=int, default=4)
    parser.add_argument("--version", default="3")
    parser.add_argument("--training-data", default="sa-engine synth --images 2000 --seed 1")
    parser.add_argument("--recipe", help="JSON list of the training phases")
    parser.add_argument("--metrics", help="metrics.json of this checkpoint: skip the evaluation")
    parser.add_argument("--device", default="auto", help=f"where to evaluate: {DEVICES_HELP}")
    args = parser.parse_args()
    if args.add_folded:
        add_folded_decoder(args.out)
        print(f"shared {share_decoder_weights(args.out)} decoder tensors in {WEIGHTS_FILE}")
        return
    if not args.checkpoint:
        parser.error("--checkpoint is required")

    if not args.heldout:
        parser.error("--heldout is required")
    os.makedirs(args.out, exist_ok=True)
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    info = {"parent": None, "training_data": args.training_data}
    if args.recipe:
        with open(args.recipe) as f:
            info["training"] = json.load(f)
        info["steps"] = sum(phase["steps"] for phase in info["training"])
    lineage = compact_checkpoint(args.checkpoint, checkpoint, info)
    if args.metrics:
        with open(args.metrics) as f:
            metrics = json.load(f)
    else:
        metrics = measure(checkpoint, args)
    print(json.dumps(metrics, indent=2))
    export_package(checkpoint, args.out, name="sae-ref", version=args.version, metrics=metrics, lineage=lineage)
    print(f"shared {share_decoder_weights(args.out)} decoder tensors in {WEIGHTS_FILE}")


if __name__ == "__main__":
    main()
