"""Temporal worker for the `sae-gpu-training` task queue: activities `trainSam` and `evaluateSam`.

Both take and return plain JSON objects (camelCase keys, as the TS workflows send them). Keys are
relative to `storage`, the store root URI (file:///dir or s3://bucket/prefix; see storage.py).

Training-set manifest (JSON at `trainingSet`):
    {"format": "coco-instances/1",
     "annotations": "<key of a COCO instances JSON (RLE or polygons)>",
     "imagesPrefix": "<key prefix that file_name is relative to; default: the annotations' folder>",
     "holdout": {"annotations": "...", "imagesPrefix": "..."}}   (optional; used by evaluateSam)

trainSam input:
    {"storage", "trainingSet", "modelName", "version" (int: writes models/<name>/v<version>/),
     "parent": "<model version prefix holding checkpoint.pt>" (optional),
     "officialCheckpoint": "<key of an official SAM .pth>", "encoder": "vit_b" (optional, no parent),
     "mode": "decoder" | "full", "steps", "batchSize", "masksPerImage", "numPoints", "cropSize",
     "cropContext", "boxProbability", "pointDepth", "lr", "seed",
     "model": {"encoder", "imageSize", "transformerMlpDim", "iouHeadHiddenDim", "peScale"} (no parent)}
  writes models/<name>/v<k>/{encoder.onnx, decoder.onnx, decoder_batched.onnx, checkpoint.pt,
  train_log.jsonl, model.json (last: its presence marks a complete version)}, heartbeats
  {"phase", "step", "steps", "loss"}, uploads a resumable checkpoint to models/<name>/v<k>/train/ so
  a retry (on any machine) continues where the last attempt stopped, and honours cancellation.

evaluateSam input:
    {"storage", "model": "<model version prefix>", "dataset": "<manifest key>",
     "maxImages", "maxMasksPerImage", "maxClicks"}
  evaluates the manifest's holdout (else all of it), writes <model>/metrics.json, merges the metrics
  into <model>/model.json and returns them.

Both run on the worker host's device: `worker --device` or SAE_TRAIN_DEVICE (default auto: the
GPU when PyTorch sees one).
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from .storage import open_store

TASK_QUEUE = "sae-gpu-training"
DEVICE_ENV = "SAE_TRAIN_DEVICE"
MODEL_FILES = ("encoder.onnx", "decoder.onnx", "decoder_batched.onnx", "checkpoint.pt",
               "train_log.jsonl")


def work_dir(*parts: str) -> str:
    base = os.environ.get("SAE_TRAINER_WORKDIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "sa-engine", "trainer-work")
    path = os.path.join(base, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def _require(inp: Dict[str, Any], *names: str) -> None:
    missing = [n for n in names if inp.get(n) in (None, "")]
    if missing:
        raise ApplicationError(f"missing input field(s): {', '.join(missing)}", non_retryable=True)


def _heartbeat_every(seconds: float) -> Callable[[Dict[str, Any]], None]:
    """A heartbeat function that sends at most one heartbeat per `seconds` (the last one wins)."""
    last = [0.0]

    def beat(details: Dict[str, Any], force: bool = False) -> None:
        if force or time.monotonic() - last[0] >= seconds:
            activity.heartbeat(details)
            last[0] = time.monotonic()
    return beat


def _check_cancel() -> None:
    if activity.is_cancelled():
        raise CancelledError("activity cancelled")


def fetch_dataset(store, manifest: Dict[str, Any], dest: str, beat) -> tuple[str, str]:
    """Download a manifest's annotations and images to dest; returns (data dir, annotation file).
    Files already there (an earlier attempt) are not downloaded again."""
    ann_key = manifest["annotations"]
    prefix = manifest.get("imagesPrefix", posixpath.dirname(ann_key))
    ann_path = os.path.join(dest, "annotations.json")
    store.download(ann_key, ann_path)
    with open(ann_path) as f:
        images = json.load(f)["images"]
    for n, image in enumerate(images, start=1):
        path = os.path.join(dest, image["file_name"])
        if not os.path.isfile(path):
            store.download(posixpath.join(prefix, image["file_name"]), path)
        beat({"phase": "download", "done": n, "total": len(images)})
        _check_cancel()
    return dest, ann_path


def _manifest(store, key: str) -> Dict[str, Any]:
    try:
        manifest = json.loads(store.get_bytes(key))
    except FileNotFoundError as e:
        raise ApplicationError(f"training-set manifest {key!r} not found", non_retryable=True) from e
    if "annotations" not in manifest:
        raise ApplicationError(f"manifest {key!r} has no 'annotations' key", non_retryable=True)
    return manifest


def _model_config(inp: Dict[str, Any]):
    from .model import ModelConfig

    m = inp.get("model") or {}
    return ModelConfig(encoder=m.get("encoder", "tiny"), image_size=m.get("imageSize", 1024),
                       transformer_mlp_dim=m.get("transformerMlpDim", 2048),
                       iou_head_hidden_dim=m.get("iouHeadHiddenDim", 256),
                       pe_scale=float(m.get("peScale", 1.0)))


def _initial_checkpoint(store, inp: Dict[str, Any], local: str) -> tuple[Optional[str], Optional[str]]:
    """(local path of the parent checkpoint, its ViT name if official) or (None, None)."""
    if inp.get("parent"):
        path = os.path.join(local, "parent.pt")
        store.download(posixpath.join(inp["parent"], "checkpoint.pt"), path)
        return path, None
    if inp.get("officialCheckpoint"):
        path = os.path.join(local, "official.pth")
        if not os.path.isfile(path):
            store.download(inp["officialCheckpoint"], path)
        return path, inp.get("encoder")
    return None, None


@activity.defn(name="trainSam")
def train_sam(inp: Dict[str, Any]) -> Dict[str, Any]:
    from .export import export_package
    from .train import train
    from .train_config import CHECKPOINT_NAME, TrainConfig, TrainingCancelled

    _require(inp, "storage", "trainingSet", "modelName", "version")
    store = open_store(inp["storage"])
    prefix = f"models/{inp['modelName']}/v{int(inp['version'])}"
    local = work_dir(inp["modelName"], f"v{int(inp['version'])}")
    beat = _heartbeat_every(5.0)

    manifest = _manifest(store, inp["trainingSet"])
    data_dir, ann_file = fetch_dataset(store, manifest, os.path.join(local, "data"), beat)
    init, init_encoder = _initial_checkpoint(store, inp, local)

    out_dir = os.path.join(local, "train")
    os.makedirs(out_dir, exist_ok=True)
    remote_ckpt = f"{prefix}/train/{CHECKPOINT_NAME}"
    local_ckpt = os.path.join(out_dir, CHECKPOINT_NAME)
    if not os.path.isfile(local_ckpt) and store.exists(remote_ckpt):
        store.download(remote_ckpt, local_ckpt)  # resume an attempt from another machine

    cfg = TrainConfig(data_dir=data_dir, out_dir=out_dir, ann_file=ann_file,
                      mode=inp.get("mode", "decoder" if init else "full"),
                      init_checkpoint=init, init_encoder=init_encoder, model=_model_config(inp),
                      steps=int(inp.get("steps", 1000)), batch_size=int(inp.get("batchSize", 4)),
                      masks_per_image=int(inp.get("masksPerImage", 8)),
                      num_points=int(inp.get("numPoints", 8)),
                      crop_size=int(inp["cropSize"]) if inp.get("cropSize") else None,
                      crop_context=float(inp["cropContext"]) if inp.get("cropContext") else None,
                      box_probability=float(inp.get("boxProbability", 0.5)),
                      point_depth=float(inp.get("pointDepth", 0.0)),
                      lr=float(inp.get("lr", 8e-4)),
                      seed=int(inp.get("seed", 0)),
                      checkpoint_every=int(inp.get("checkpointEvery", 100)),
                      device=worker_device())

    def progress(stats: Dict[str, Any]) -> None:
        if stats.get("checkpointed"):
            store.upload(local_ckpt, remote_ckpt)
        beat({"phase": "train", "step": stats["step"], "steps": stats["steps"],
              "loss": stats["loss"]}, force=bool(stats.get("checkpointed")))

    try:
        result = train(cfg, progress=progress, cancel=activity.is_cancelled)
    except TrainingCancelled as e:
        store.upload(local_ckpt, remote_ckpt)
        raise CancelledError(str(e)) from e

    beat({"phase": "export"}, force=True)
    package_dir = os.path.join(local, "package")
    lineage = {"parent": inp.get("parent") or inp.get("officialCheckpoint"),
               "training_data": {"manifest": inp["trainingSet"], "storage": inp["storage"]},
               "steps": result["steps"], "mode": cfg.mode}
    package = export_package(result["checkpoint"], package_dir, name=inp["modelName"],
                             version=f"v{int(inp['version'])}", lineage=lineage,
                             log=lambda msg: activity.logger.info(msg))
    files = {name: os.path.join(package_dir, name) for name in MODEL_FILES[:3]}
    files.update({"checkpoint.pt": result["checkpoint"],
                  "train_log.jsonl": os.path.join(out_dir, "train_log.jsonl")})
    for name, path in files.items():
        if os.path.isfile(path):
            store.upload(path, f"{prefix}/{name}")
    store.put_bytes(f"{prefix}/model.json", json.dumps(package, indent=2).encode())
    return {"model": prefix, "modelJson": f"{prefix}/model.json", "steps": result["steps"],
            "finalLoss": result["final"].get("loss"), "seconds": result["seconds"],
            "parity": package["parity"]["onnx_vs_pytorch_max_abs_diff"]}


@activity.defn(name="evaluateSam")
def evaluate_sam(inp: Dict[str, Any]) -> Dict[str, Any]:
    from .data import CocoInstances
    from .evaluate import evaluate
    from .model import load_checkpoint, resolve_device

    _require(inp, "storage", "model", "dataset")
    store = open_store(inp["storage"])
    manifest = _manifest(store, inp["dataset"])
    split = manifest.get("holdout") or manifest
    local = work_dir("eval", inp["model"].replace("/", "_"))
    beat = _heartbeat_every(5.0)
    data_dir, ann_file = fetch_dataset(store, split, os.path.join(local, "data"), beat)
    ckpt = os.path.join(local, "checkpoint.pt")
    store.download(posixpath.join(inp["model"], "checkpoint.pt"), ckpt)
    sam, _, _ = load_checkpoint(ckpt)
    sam.to(resolve_device(worker_device()))

    metrics = evaluate(sam, CocoInstances(data_dir, ann_file), max_images=inp.get("maxImages"),
                       max_masks_per_image=inp.get("maxMasksPerImage"),
                       max_clicks=int(inp.get("maxClicks", 20)),
                       progress=lambda n, total: beat({"phase": "evaluate", "done": n,
                                                       "total": total}),
                       cancel=activity.is_cancelled)
    metrics["dataset"] = inp["dataset"]
    store.put_bytes(posixpath.join(inp["model"], "metrics.json"), json.dumps(metrics, indent=2).encode())
    model_json = posixpath.join(inp["model"], "model.json")
    if store.exists(model_json):
        package = json.loads(store.get_bytes(model_json))
        package["metrics"] = metrics
        store.put_bytes(model_json, json.dumps(package, indent=2).encode())
    return metrics


async def run_worker(address: str, namespace: str, task_queue: str, device: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address, namespace=namespace)
    # Training is CPU/GPU bound and runs in a thread; one activity at a time per worker process.
    with ThreadPoolExecutor(max_workers=1) as pool:
        worker = Worker(client, task_queue=task_queue, activities=[train_sam, evaluate_sam],
                        activity_executor=pool, max_concurrent_activities=1)
        print(f"sae-trainer worker: {address} namespace {namespace} queue {task_queue} "
              f"device {device}", flush=True)
        await worker.run()


def worker_device() -> str:
    """The device is the worker host's, not the workflow's: a GPU host's worker trains on its GPU."""
    return os.environ.get(DEVICE_ENV, "auto")


def main(args) -> None:
    from .model import resolve_device

    if args.device:
        os.environ[DEVICE_ENV] = args.device
    device = resolve_device(worker_device())  # a host without the asked-for device fails at start
    address = args.address or os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")
    namespace = args.namespace or os.environ.get("TEMPORAL_NAMESPACE", "default")
    task_queue = args.task_queue or os.environ.get("SAE_TRAINING_TASK_QUEUE", TASK_QUEUE)
    asyncio.run(run_worker(address, namespace, task_queue, str(device)))
