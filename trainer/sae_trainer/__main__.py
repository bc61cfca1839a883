"""Command line (PYTHONPATH=trainer):
`python -m sae_trainer {train,export,evaluate,fit-iou-head,train-detector,evaluate-detector,
export-detector,bench,worker} ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .model import DEVICES_HELP, ENCODERS, ModelConfig, TinyEncoderConfig


def train_config_from_args(args: argparse.Namespace):
    from .train_config import TrainConfig

    tiny = TinyEncoderConfig(depths=tuple(int(d) for d in args.tiny_depths.split(",")),
                             colour_cells=args.colour_cells)
    model = ModelConfig(encoder=args.encoder, image_size=args.image_size,
                        transformer_mlp_dim=args.mlp_dim, iou_head_hidden_dim=args.iou_hidden,
                        pe_scale=args.pe_scale, tiny=tiny)
    cfg = TrainConfig(data_dir=args.data, out_dir=args.out, ann_file=args.ann, mode=args.mode,
                      init_checkpoint=args.init, init_encoder=args.init_encoder, model=model,
                      steps=args.steps, batch_size=args.batch_size,
                      masks_per_image=args.masks_per_image, num_points=args.num_points,
                      refinements=not args.no_refinements,
                      crop_size=args.crop_size, crop_context=args.crop_context,
                      anchor_power=args.anchor_power, region_loss_weight=args.region_loss,
                      box_probability=args.box_probability,
                      point_depth=args.point_depth, init_embedding_scale=args.init_embedding_scale,
                      lr=args.lr, warmup_steps=args.warmup_steps,
                      seed=args.seed, checkpoint_every=args.checkpoint_every,
                      log_every=args.log_every, device=args.device,
                      max_seconds=args.max_seconds, loader_threads=args.loader_threads,
                      train_only=(tuple(p for p in args.train_only.split(",") if p)
                                  if args.train_only else None),
                      **({} if args.lr_decay_at is None else
                         {"lr_decay_at": tuple(float(f) for f in args.lr_decay_at.split(",") if f)}))
    return cfg


def _train(args: argparse.Namespace) -> None:
    from .train import train

    cfg = train_config_from_args(args)

    def progress(s: dict) -> None:
        if s["step"] % args.log_every == 0 or s["step"] == s["steps"]:
            print(f"step {s['step']}/{s['steps']} loss {s['loss']:.4f} iou {s['iou']:.3f} "
                  f"lr {s['lr']:.2e} {s['seconds']:.2f}s/step", flush=True)

    print(json.dumps(train(cfg, progress=progress), default=str, indent=2))


def _export(args: argparse.Namespace) -> None:
    from .export import export_package

    metrics = json.load(open(args.metrics)) if args.metrics else None
    export_package(args.checkpoint, args.out, encoder=args.encoder, batched=not args.no_batched,
                   check=not args.no_check, name=args.name, version=args.version, metrics=metrics)


def _evaluate(args: argparse.Namespace) -> None:
    from .data import CocoInstances
    from .evaluate import evaluate
    from .model import load_checkpoint, resolve_device

    sam, _, _ = load_checkpoint(args.checkpoint, encoder=args.encoder)
    sam.to(resolve_device(args.device))
    dataset = CocoInstances(args.data, args.ann)
    if args.holdout_fraction:
        dataset = dataset.split(args.holdout_fraction, args.split_seed)[1]
    metrics = evaluate(sam, dataset, max_images=args.max_images,
                       max_masks_per_image=args.max_masks_per_image, max_clicks=args.max_clicks,
                       use_ignore=not args.no_ignore, blank_check=not args.no_blank_check)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def _fit_iou_head(args: argparse.Namespace) -> None:
    from .data import CocoInstances
    from .iou_head import refit_iou_head
    from .model import load_checkpoint, save_checkpoint

    sam, cfg, extra = load_checkpoint(args.checkpoint)
    dataset = CocoInstances(args.data, args.ann)
    done = refit_iou_head(sam, dataset, max_images=args.max_images,
                          masks_per_image=args.masks_per_image, epochs=args.epochs, seed=args.seed,
                          progress=lambda n, total: print(f"collect {n}/{total}", end="\r",
                                                          flush=True))
    done.update(parent=args.checkpoint, data=args.data)
    lineage = {**(extra.get("lineage_info") or {}), "iou_head_refit": done}
    save_checkpoint(args.out, sam, cfg, step=extra.get("step"), lineage_info=lineage)
    print(json.dumps(done, indent=2))


def _split_ids(data: str, ann, holdout_fraction: float, split_seed: int, held_out: bool,
               file_prefix: str = ""):
    """Image ids of one side of a deterministic split, of the images whose file_name starts with
    file_prefix (None: all images)."""
    if not holdout_fraction and not file_prefix:
        return None
    from .data import CocoInstances

    dataset = CocoInstances(data, ann)
    if holdout_fraction:
        train, holdout = dataset.split(holdout_fraction, split_seed)
        dataset = holdout if held_out else train
    return [i for i in dataset.image_ids
            if dataset.coco.imgs[i]["file_name"].startswith(file_prefix)]


def _train_detector(args: argparse.Namespace) -> None:
    from .detector import DetectorConfig
    from .detector_train import DetectorTrainConfig, train_detector

    cfg = DetectorTrainConfig(
        data_dir=args.data, out_dir=args.out, sam_checkpoint=args.sam, ann_file=args.ann,
        init_checkpoint=args.init, detector=DetectorConfig(width=args.width,
                                dilations=tuple(int(d) for d in args.dilations.split(","))),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        checkpoint_every=args.checkpoint_every, device=args.device,
        image_ids=_split_ids(args.data, args.ann, args.holdout_fraction, args.split_seed, False))

    def progress(s: dict) -> None:
        if s["phase"] == "embed":
            print(f"embed {s['done']}/{s['total']}", end="\r", flush=True)
        elif s["step"] % 50 == 0 or s["step"] == s["steps"]:
            print(f"step {s['step']}/{s['steps']} loss {s['loss']:.4f} heatmap {s['heatmap']:.4f} "
                  f"size {s['size']:.4f} offset {s['offset']:.4f}", flush=True)

    print(json.dumps(train_detector(cfg, progress=progress), indent=2))


def _evaluate_detector(args: argparse.Namespace) -> None:
    from .detector import DecodeSettings
    from .detector_train import evaluate_detector

    metrics = evaluate_detector(
        args.checkpoint, args.sam, args.data, ann_file=args.ann, max_images=args.max_images,
        image_ids=_split_ids(args.data, args.ann, args.holdout_fraction, args.split_seed, True,
                             args.file_prefix),
        settings=DecodeSettings(args.score_threshold, args.nms_iou, args.max_detections),
        embedding_cache=args.embedding_cache,
        progress=lambda n, total: print(f"embed {n}/{total}", end="\r", flush=True))
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def _export_detector(args: argparse.Namespace) -> None:
    from .detector import DecodeSettings
    from .detector_train import export_detector
    from .storage import file_sha256

    sam = {"model": args.sam_name} if args.sam_name else {}
    if args.sam_package:
        sam["encoder_onnx_sha256"] = file_sha256(os.path.join(args.sam_package, "encoder.onnx"))
    metrics = json.load(open(args.metrics)) if args.metrics else None
    package = export_detector(args.checkpoint, args.out, name=args.name, version=args.version,
                              sam=sam, metrics=metrics,
                              settings=DecodeSettings(args.score_threshold, args.nms_iou,
                                                      args.max_detections))
    print(json.dumps(package["parity"], indent=2))


def _bench(args: argparse.Namespace) -> None:
    from .bench import main as bench_main

    bench_main(args)


def _worker(args: argparse.Namespace) -> None:
    from .worker import main as worker_main

    worker_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sae_trainer")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train on a COCO-instance folder")
    t.add_argument("--data", required=True, help="dataset folder (images + COCO instances JSON)")
    t.add_argument("--ann", help="annotation file (default: found in --data)")
    t.add_argument("--out", required=True, help="output folder (checkpoint.pt, train_log.jsonl)")
    t.add_argument("--mode", choices=["full", "decoder"], default="full")
    t.add_argument("--train-only", metavar="PREFIXES",
                   help="decoder mode: train only the parameters whose names start with one of "
                        "these comma-separated prefixes")
    t.add_argument("--init", help="parent checkpoint (ours or official SAM)")
    t.add_argument("--init-encoder", choices=ENCODERS[1:], help="ViT of an official --init")
    t.add_argument("--encoder", choices=ENCODERS, default="tiny")
    t.add_argument("--image-size", type=int, default=1024)
    t.add_argument("--mlp-dim", type=int, default=2048, help="decoder transformer MLP width")
    t.add_argument("--iou-hidden", type=int, default=256, help="IoU head hidden width")
    t.add_argument("--pe-scale", type=float, default=1.0,
                   help="prompt encoder's Fourier frequency spread (official SAM: 1)")
    t.add_argument("--tiny-depths", default="1,2", help="tiny encoder: blocks at stride 8 and 16")
    t.add_argument("--colour-cells", action="store_true",
                   help="tiny encoder: pack each cell's stride-4 mean colours into the embedding "
                        "(added to a parent that has none)")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch-size", type=int, default=4)
    t.add_argument("--masks-per-image", type=int, default=8)
    t.add_argument("--num-points", type=int, default=8, help="corrective points per example")
    t.add_argument("--region-loss", type=float, default=0.0,
                   help="weight of the auxiliary region-contrast loss on the encoder (0: off)")
    t.add_argument("--anchor-power", type=float, default=0.0,
                   help="windows built around a mask drawn ~ box area ** this (0: uniform)")
    t.add_argument("--no-refinements", action="store_true",
                   help="skip the 2 iterations without a new point (paper: with them)")
    t.add_argument("--crop-size", type=int, help="train on windows of this side (multiple of 16)")
    t.add_argument("--crop-context", type=float,
                   help="windows this many times the longer side of their anchor mask "
                        "(--crop-size is then the smallest window)")
    t.add_argument("--box-probability", type=float, default=0.5,
                   help="share of first prompts that are boxes (paper: 0.5)")
    t.add_argument("--point-depth", type=float, default=0.0,
                   help="first points from the mask's part at least this share of its deepest "
                        "depth from the boundary (paper: 0, uniform)")
    t.add_argument("--init-embedding-scale", type=float, default=0.1,
                   help="a fresh model's initial embedding scale (tiny encoder's last LayerNorm)")
    t.add_argument("--lr", type=float, default=8e-4)
    t.add_argument("--warmup-steps", type=int, default=50)
    t.add_argument("--lr-decay-at",
                   help="comma-separated fractions of --steps where the lr drops x0.1 "
                        "(default 2/3 and 8/9, SAM's step decay; '' for none)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--device", default="auto", help=DEVICES_HELP)
    t.add_argument("--max-seconds", type=float,
                   help="stop with a checkpoint after the first step past this time budget")
    t.add_argument("--loader-threads", type=int, default=1,
                   help="threads making each batch's examples (results do not depend on it)")
    t.set_defaults(func=_train)

    e = sub.add_parser("export", help="export a checkpoint to an ONNX model package")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--encoder", choices=ENCODERS[1:], help="ViT of an official checkpoint")
    e.add_argument("--out", required=True)
    e.add_argument("--name")
    e.add_argument("--version")
    e.add_argument("--metrics", help="metrics JSON to embed (e.g. from evaluate --out)")
    e.add_argument("--no-batched", action="store_true", help="skip decoder_batched.onnx")
    e.add_argument("--no-check", action="store_true", help="skip the ONNX vs PyTorch check")
    e.set_defaults(func=_export)

    v = sub.add_parser("evaluate", help="1-click mIoU and NoC@90 on held-out images")
    v.add_argument("--checkpoint", required=True)
    v.add_argument("--encoder", choices=ENCODERS[1:])
    v.add_argument("--data", required=True)
    v.add_argument("--ann")
    v.add_argument("--holdout-fraction", type=float, default=0.0,
                   help="evaluate only this held-out share of the images (split by --split-seed)")
    v.add_argument("--split-seed", type=int, default=0)
    v.add_argument("--max-images", type=int)
    v.add_argument("--max-masks-per-image", type=int)
    v.add_argument("--max-clicks", type=int, default=20)
    v.add_argument("--no-ignore", action="store_true", help="do not exclude crowd regions")
    v.add_argument("--no-blank-check", action="store_true",
                   help="skip miou_1click_blank (the first clicks again on a grey image)")
    v.add_argument("--out", help="write the metrics JSON here")
    v.add_argument("--device", default="auto", help=DEVICES_HELP)
    v.set_defaults(func=_evaluate)

    f = sub.add_parser("fit-iou-head",
                       help="refit a model's IoU head on whole images, everything else frozen")
    f.add_argument("--checkpoint", required=True, help="our checkpoint (train's checkpoint.pt)")
    f.add_argument("--data", required=True, help="training images (never the held-out set)")
    f.add_argument("--ann")
    f.add_argument("--out", required=True, help="the new checkpoint file")
    f.add_argument("--max-images", type=int, help="use the first N images (default all)")
    f.add_argument("--masks-per-image", type=int, default=8)
    f.add_argument("--epochs", type=int, default=200)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_fit_iou_head)

    def split_args(parser: argparse.ArgumentParser, side: str) -> None:
        parser.add_argument("--holdout-fraction", type=float, default=0.0,
                            help=f"use only the {side} side of a split by image (--split-seed)")
        parser.add_argument("--split-seed", type=int, default=0)

    def decode_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--score-threshold", type=float, default=0.1)
        parser.add_argument("--nms-iou", type=float, default=0.5)
        parser.add_argument("--max-detections", type=int, default=100)

    td = sub.add_parser("train-detector", help="train the stage-2 box detector on a SAM model's embeddings")
    td.add_argument("--data", required=True)
    td.add_argument("--ann")
    td.add_argument("--sam", required=True, help="SAM checkpoint whose frozen encoder it reads")
    td.add_argument("--out", required=True, help="output folder (detector.pt, detector_log.jsonl)")
    td.add_argument("--init", help="a detector checkpoint to continue from")
    td.add_argument("--width", type=int, default=64)
    td.add_argument("--dilations", default="1,2,4", help="one 3x3 conv per entry, this dilated")
    td.add_argument("--steps", type=int, default=2000)
    td.add_argument("--batch-size", type=int, default=16)
    td.add_argument("--lr", type=float, default=1e-3)
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--checkpoint-every", type=int, default=200)
    td.add_argument("--device", default="auto", help=DEVICES_HELP)
    split_args(td, "training")
    td.set_defaults(func=_train_detector)

    ed = sub.add_parser("evaluate-detector", help="COCO box AP/AR (class-agnostic) of a detector")
    ed.add_argument("--checkpoint", required=True)
    ed.add_argument("--sam", required=True)
    ed.add_argument("--data", required=True)
    ed.add_argument("--ann")
    ed.add_argument("--max-images", type=int)
    ed.add_argument("--embedding-cache", help="default: embeddings/ beside the checkpoint")
    ed.add_argument("--out", help="write the metrics JSON here")
    ed.add_argument("--file-prefix", default="",
                    help="only the images whose file_name starts with this (e.g. images/bsds/)")
    split_args(ed, "held-out")
    decode_args(ed)
    ed.set_defaults(func=_evaluate_detector)

    xd = sub.add_parser("export-detector", help="export a detector checkpoint to an ONNX package")
    xd.add_argument("--checkpoint", required=True)
    xd.add_argument("--out", required=True)
    xd.add_argument("--name")
    xd.add_argument("--version")
    xd.add_argument("--sam-name", help="the SAM model it reads, e.g. sae-ref@v4")
    xd.add_argument("--sam-package", help="that model's package folder (records its encoder.onnx digest)")
    xd.add_argument("--metrics", help="metrics JSON to embed (e.g. from evaluate-detector --out)")
    decode_args(xd)
    xd.set_defaults(func=_export_detector)

    b = sub.add_parser("bench", help="CPU timings: training step, decoder per prompt")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    b.add_argument("--detectors", action="store_true",
                   help="only the stage-2 detectors: the head on the embedding vs Faster R-CNNs")
    b.set_defaults(func=_bench)

    w = sub.add_parser("worker", help="Temporal worker on the sae-gpu-training task queue")
    w.add_argument("--address", default=None, help="Temporal address (env TEMPORAL_ADDRESS)")
    w.add_argument("--namespace", default=None)
    w.add_argument("--task-queue", default=None)
    w.add_argument("--device", default=None,
                   help=f"where trainSam and evaluateSam run (env SAE_TRAIN_DEVICE): {DEVICES_HELP}")
    w.add_argument("--health-port", default=None, metavar="PORT",
                   help="serve GET /healthz and /readyz on 0.0.0.0:PORT (env SAE_HEALTH_PORT)")
    w.add_argument("--shutdown-grace", default=None, metavar="SECONDS",
                   help="after SIGTERM, how long the activity in flight may run before it is "
                        "cancelled and retried elsewhere (env SAE_SHUTDOWN_GRACE_SECONDS; default 300)")
    w.add_argument("--deployment-name", default=None, metavar="NAME",
                   help="Worker Versioning: the worker deployment, with --build-id "
                        "(env SAE_DEPLOYMENT_NAME)")
    w.add_argument("--build-id", default=None, metavar="ID",
                   help="Worker Versioning: this build, with --deployment-name (env SAE_BUILD_ID)")
    w.set_defaults(func=_worker)
    return p


def set_threads() -> None:
    """SAE_TORCH_THREADS caps torch's intra-op threads: on a shared or busy CPU, 1 thread is often
    several times faster than the default (one per core), whose threads wait on each other."""
    threads = int(os.environ.get("SAE_TORCH_THREADS", "0"))
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    set_threads()
    try:
        args.func(args)
    except ValueError as e:  # a bad option or input, said plainly rather than as a traceback
        sys.exit(f"sae_trainer {args.command}: {e}")


if __name__ == "__main__":
    main(sys.argv[1:])
