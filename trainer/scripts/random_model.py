"""A model package with randomly initialised weights (seeded), for parity checks: comparing two
implementations needs identical weights, not good ones, and a random decoder produces non-empty,
varied masks where an undertrained one may produce none.

    PYTHONPATH=trainer python trainer/scripts/random_model.py --out DIR [--seed 0]

Writes DIR/checkpoint.pt (float16-rounded weights, so PyTorch and ONNX hold identical values)
and the ONNX package exported from it.
"""
import argparse
import os

import torch

from sae_trainer.export import export_package
from sae_trainer.model import ModelConfig, build_sam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    cfg = ModelConfig(encoder="tiny", transformer_mlp_dim=512, iou_head_hidden_dim=128)
    sam = build_sam(cfg)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in sam.state_dict().items()}
    os.makedirs(args.out, exist_ok=True)
    checkpoint = os.path.join(args.out, "checkpoint.pt")
    info = {"parent": None, "training_data": None, "steps": 0, "weights": f"random, seed {args.seed}"}
    torch.save({"config": cfg.to_dict(), "model": half, "step": 0, "lineage_info": info}, checkpoint)
    export_package(checkpoint, args.out, name="random", version=str(args.seed), lineage=info, check=False)


if __name__ == "__main__":
    main()
