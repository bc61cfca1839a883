"""Temporal worker for the `sae-gpu-training` task queue: activities `trainSam` and `evaluateSam`,
and the stage-2 detector's `trainDetector` and `evaluateDetector` (below them).

Both take and return plain JSON objects (camelCase keys, as the TS workflows send them), checked
against contract.schema.json (generated from lib/training/contract.ts; see contract.py) on the way
in and out. Keys are relative to `storage`, the store root URI (file:///dir or s3://bucket/prefix;
see storage.py).

Training-set manifest (JSON at `trainingSet`):
    {"format": "coco-instances/1",
     "annotations": "<key of a COCO instances JSON (RLE or polygons)>",
     "imagesPrefix": "<key prefix that file_name is relative to; default: the annotations' folder>",
     "holdout": {"annotations": "...", "imagesPrefix": "..."}}   (optional; used by evaluateSam)

trainSam input (TrainSamInput in contract.schema.json):
    {"storage", "trainingSet", "registry", "modelName", "version" (a version the caller claimed in
     the registry: writes <registry>/<name>/v<version>/), "parent": "<name>/v<k>" (optional),
     "officialCheckpoint": "<key in storage of an official SAM .pth>", "encoder" (optional),
     "mode", "steps", ... (see the schema)}
  writes <name>/v<k>/{encoder.onnx, decoder.onnx, decoder_batched.onnx, checkpoint.pt,
  train_log.jsonl, model.json} in the registry, heartbeats {"phase", ...} through download, training,
  export and upload, uploads a resumable checkpoint to <name>/v<k>/train/ so a retry (on any
  machine) continues where the last attempt stopped, and honours cancellation. The registry's
  lineage.json, which makes the version complete, is the workflow's to write.

evaluateSam input (EvaluateSamInput):
    {"storage", "dataset": "<manifest key>", "registry", "model": "<name>/v<k>",
     "maxImages", "maxMasksPerImage", "maxClicks"}
  evaluates the manifest's holdout (else all of it) and returns the figures; writes nothing.

Both run on the worker host's device: `worker --device` or SAE_TRAIN_DEVICE (default auto: the
GPU when PyTorch sees one).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from .contract import ContractError, check
from .storage import check_key, file_sha256, open_store

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


def _checked(name: str, payload: Dict[str, Any]) -> Dict[str, Any]:
    """The payload, when it matches the contract (contract.py); a retry could not fix one that does not."""
    try:
        return check(name, payload)
    except ContractError as e:
        raise ApplicationError(str(e), type="ContractError", non_retryable=True) from e


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
        # file_name comes from annotators' files: a plain relative key, or the manifest is refused.
        try:
            check_key(image["file_name"])
        except ValueError as e:
            raise ApplicationError(f"{ann_key}: image {image.get('id')}: {e}", type="ContractError",
                                   non_retryable=True) from e
        path = os.path.join(dest, image["file_name"])
        if not os.path.isfile(path):
            store.download(posixpath.join(prefix, image["file_name"]), path)
        beat({"phase": "download", "done": n, "total": len(images)})
        _check_cancel()
    return dest, ann_path


def _manifest(store, key: str) -> tuple[bytes, Dict[str, Any]]:
    """The manifest's bytes (their hash goes into the lineage) and its content."""
    try:
        data = store.get_bytes(key)
    except FileNotFoundError as e:
        raise ApplicationError(f"training-set manifest {key!r} not found", non_retryable=True) from e
    manifest = json.loads(data)
    if "annotations" not in manifest:
        raise ApplicationError(f"manifest {key!r} has no 'annotations' key", non_retryable=True)
    return data, manifest


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _version_key(models, registry: str, version: str) -> str:
    """A registry version's key in this host's caches: where it is, and which incarnation (its
    claim.json, written once when the number is taken). A registry recreated at the same URI
    numbers its versions from v1 again; without the claim, its v1 would reuse another model's
    cached checkpoint, or refuse to resume a training that is not its own."""
    claim_key = posixpath.join(version, "claim.json")
    claim = hashlib.sha256(models.get_bytes(claim_key)).hexdigest() if models.exists(claim_key) else ""
    return _digest(registry, version, claim)


def _model_config(inp: Dict[str, Any]):
    from .model import ModelConfig

    m = inp.get("model") or {}
    return ModelConfig(encoder=m.get("encoder", "tiny"), image_size=m.get("imageSize", 1024),
                       transformer_mlp_dim=m.get("transformerMlpDim", 2048),
                       iou_head_hidden_dim=m.get("iouHeadHiddenDim", 256),
                       pe_scale=float(m.get("peScale", 1.0)))


def _initial_checkpoint(store, models, inp: Dict[str, Any],
                        local: str) -> tuple[Optional[str], Optional[str]]:
    """(local path of the parent checkpoint, its ViT name if official) or (None, None)."""
    if inp.get("parent"):
        path = os.path.join(local, "parent.pt")
        models.download(posixpath.join(inp["parent"], "checkpoint.pt"), path)
        return path, None
    if inp.get("officialCheckpoint"):
        path = os.path.join(local, "official.pth")
        if not os.path.isfile(path):
            store.download(inp["officialCheckpoint"], path)
        return path, inp.get("encoder")
    return None, None


def _upload_package(models, prefix: str, files: Dict[str, str], package: Dict[str, Any],
                    beat) -> list:
    """Uploads a version's files (those that exist) and then its model.json; returns what the
    registry's lineage lists: name, bytes and SHA-256 of each."""
    uploaded = []
    for name, path in files.items():
        if os.path.isfile(path):
            beat({"phase": "upload", "file": name}, force=True)
            models.upload(path, f"{prefix}/{name}")
            uploaded.append({"name": name, "bytes": os.path.getsize(path), "sha256": file_sha256(path)})
    model_json = json.dumps(package, indent=2).encode()
    models.put_bytes(f"{prefix}/model.json", model_json)
    uploaded.append({"name": "model.json", "bytes": len(model_json),
                     "sha256": hashlib.sha256(model_json).hexdigest()})
    return uploaded


@activity.defn(name="trainSam")
def train_sam(inp: Dict[str, Any]) -> Dict[str, Any]:
    from .export import export_package
    from .train import train
    from .train_config import CHECKPOINT_NAME, TrainConfig, TrainingCancelled

    _checked("TrainSamInput", inp)
    store = open_store(inp["storage"])
    models = open_store(inp["registry"])
    prefix = f"{inp['modelName']}/v{int(inp['version'])}"
    # Keyed by where the version goes, not by its name: two registries may both have a v3.
    local = work_dir("train", _version_key(models, inp["registry"], prefix))
    beat = _heartbeat_every(5.0)

    manifest_bytes, manifest = _manifest(store, inp["trainingSet"])
    data_dir, ann_file = fetch_dataset(store, manifest, os.path.join(local, "data"), beat)
    init, init_encoder = _initial_checkpoint(store, models, inp, local)

    out_dir = os.path.join(local, "train")
    os.makedirs(out_dir, exist_ok=True)
    remote_ckpt = f"{prefix}/train/{CHECKPOINT_NAME}"
    local_ckpt = os.path.join(out_dir, CHECKPOINT_NAME)
    if not os.path.isfile(local_ckpt) and models.exists(remote_ckpt):
        models.download(remote_ckpt, local_ckpt)  # resume an attempt from another machine

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
            models.upload(local_ckpt, remote_ckpt)
        beat({"phase": "train", "step": stats["step"], "steps": stats["steps"],
              "loss": stats["loss"]}, force=bool(stats.get("checkpointed")))

    try:
        result = train(cfg, progress=progress, cancel=activity.is_cancelled)
    except TrainingCancelled as e:
        models.upload(local_ckpt, remote_ckpt)
        raise CancelledError(str(e)) from e

    beat({"phase": "export"}, force=True)

    def export_log(message: str) -> None:
        # Each export step heartbeats: a large model's export must not look like a dead worker.
        activity.logger.info(message)
        beat({"phase": "export", "step": message}, force=True)

    package_dir = os.path.join(local, "package")
    training_set_uri = store.uri(inp["trainingSet"])
    training_set_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    lineage = {"parent": inp.get("parent") or inp.get("officialCheckpoint"),
               "training_data": {"manifest": training_set_uri, "sha256": training_set_sha256},
               "steps": result["steps"], "mode": cfg.mode}
    package = export_package(result["checkpoint"], package_dir, name=inp["modelName"],
                             version=f"v{int(inp['version'])}", lineage=lineage,
                             log=lambda msg: export_log(msg))
    files = {name: os.path.join(package_dir, name) for name in MODEL_FILES[:3]}
    files.update({"checkpoint.pt": result["checkpoint"],
                  "train_log.jsonl": os.path.join(out_dir, "train_log.jsonl")})
    uploaded = _upload_package(models, prefix, files, package, beat)
    return _checked("TrainSamResult", {
        "model": prefix, "modelJson": f"{prefix}/model.json",
        "trainingSetUri": training_set_uri, "trainingSetSha256": training_set_sha256,
        "steps": result["steps"],
        "finalLoss": result["final"].get("loss"), "seconds": result["seconds"],
        "parity": package["parity"]["onnx_vs_pytorch_max_abs_diff"], "files": uploaded})


@activity.defn(name="evaluateSam")
def evaluate_sam(inp: Dict[str, Any]) -> Dict[str, Any]:
    from .data import CocoInstances
    from .evaluate import evaluate
    from .model import load_checkpoint, resolve_device

    _checked("EvaluateSamInput", inp)
    store = open_store(inp["storage"])
    models = open_store(inp["registry"])
    _, manifest = _manifest(store, inp["dataset"])
    split = manifest.get("holdout") or manifest
    # The data by where it lives, the checkpoint by its version: both are fetched once per host.
    data_dir, ann_file = fetch_dataset(store, split, work_dir("eval-data", _digest(inp["storage"], inp["dataset"])),
                                       _heartbeat_every(5.0))
    ckpt = os.path.join(work_dir("eval-model", _version_key(models, inp["registry"], inp["model"])),
                        "checkpoint.pt")
    if not os.path.isfile(ckpt):
        models.download(posixpath.join(inp["model"], "checkpoint.pt"), ckpt)
    sam, _, _ = load_checkpoint(ckpt)
    sam.to(resolve_device(worker_device()))

    beat = _heartbeat_every(5.0)
    metrics = evaluate(sam, CocoInstances(data_dir, ann_file), max_images=inp.get("maxImages"),
                       max_masks_per_image=inp.get("maxMasksPerImage"),
                       max_clicks=int(inp.get("maxClicks", 20)),
                       progress=lambda n, total: beat({"phase": "evaluate", "done": n,
                                                       "total": total}),
                       cancel=activity.is_cancelled)
    metrics["dataset"] = inp["dataset"]
    # Returned only: a registry version is never written after it was made (the retrain workflow
    # keeps the figures in the new version's lineage).
    return _checked("EvaluateSamResult", metrics)


def _sam_checkpoint(models, registry: str, sam: str, beat) -> str:
    """A SAM version's checkpoint from the registry, downloaded once per host."""
    path = os.path.join(work_dir("sam", _version_key(models, registry, sam)), "checkpoint.pt")
    if not os.path.isfile(path):
        beat({"phase": "download", "file": f"{sam}/checkpoint.pt"}, force=True)
        models.download(posixpath.join(sam, "checkpoint.pt"), path)
    return path


def _encoder_sha256(models, registry: str, sam: str) -> str:
    """SHA-256 of a SAM version's encoder.onnx: from its lineage when it lists it, else hashed."""
    try:
        lineage = json.loads(models.get_bytes(posixpath.join(sam, "lineage.json")))
        for f in lineage.get("files", []):
            if f.get("name") == "encoder.onnx":
                return f["sha256"]
    except FileNotFoundError:
        pass
    path = os.path.join(work_dir("sam", _version_key(models, registry, sam)), "encoder.onnx")
    models.download(posixpath.join(sam, "encoder.onnx"), path)
    return file_sha256(path)


def _decode_settings(inp: Dict[str, Any]):
    from .detector import DecodeSettings

    d, default = inp.get("decode") or {}, DecodeSettings()
    return DecodeSettings(float(d.get("scoreThreshold", default.score_threshold)),
                          float(d.get("nmsIou", default.nms_iou)),
                          int(d.get("maxDetections", default.max_detections)))


@activity.defn(name="trainDetector")
def train_detector_activity(inp: Dict[str, Any]) -> Dict[str, Any]:
    """Trains the stage-2 box detector on a SAM version's embeddings and writes it to the registry
    as <modelName>/v<version>/ (detector.onnx, detector.pt, detector_log.jsonl, model.json);
    heartbeats, resumes from <modelName>/v<version>/train/ and honours cancellation as trainSam."""
    from .detector import DetectorConfig
    from .detector_train import (CHECKPOINT_NAME, DETECTOR_FILE, DetectorTrainConfig,
                                 DetectorTrainingCancelled, export_detector, train_detector)

    _checked("TrainDetectorInput", inp)
    store, models = open_store(inp["storage"]), open_store(inp["registry"])
    prefix = f"{inp['modelName']}/v{int(inp['version'])}"
    local = work_dir("train-detector", _version_key(models, inp["registry"], prefix))
    beat = _heartbeat_every(5.0)

    manifest_bytes, manifest = _manifest(store, inp["trainingSet"])
    data_dir, ann_file = fetch_dataset(store, manifest, os.path.join(local, "data"), beat)
    sam_ckpt = _sam_checkpoint(models, inp["registry"], inp["sam"], beat)
    init = None
    if inp.get("parent"):
        init = os.path.join(local, "parent.pt")
        models.download(posixpath.join(inp["parent"], CHECKPOINT_NAME), init)

    out_dir = os.path.join(local, "train")
    os.makedirs(out_dir, exist_ok=True)
    remote_ckpt, local_ckpt = f"{prefix}/train/{CHECKPOINT_NAME}", os.path.join(out_dir, CHECKPOINT_NAME)
    if not os.path.isfile(local_ckpt) and models.exists(remote_ckpt):
        models.download(remote_ckpt, local_ckpt)  # resume an attempt from another machine
    default = DetectorConfig()
    cfg = DetectorTrainConfig(
        data_dir=data_dir, out_dir=out_dir, sam_checkpoint=sam_ckpt, ann_file=ann_file,
        init_checkpoint=init,
        detector=DetectorConfig(width=int(inp.get("width", default.width)),
                                dilations=tuple(inp.get("dilations", default.dilations))),
        steps=int(inp["steps"]), batch_size=int(inp.get("batchSize", 16)),
        lr=float(inp.get("lr", 1e-3)), seed=int(inp.get("seed", 0)),
        checkpoint_every=int(inp.get("checkpointEvery", 100)), device=worker_device())

    def progress(stats: Dict[str, Any]) -> None:
        if stats.get("checkpointed"):
            models.upload(local_ckpt, remote_ckpt)
        beat({k: v for k, v in stats.items() if k != "checkpointed"},
             force=bool(stats.get("checkpointed")))

    try:
        result = train_detector(cfg, progress=progress, cancel=activity.is_cancelled)
    except DetectorTrainingCancelled as e:
        if os.path.isfile(local_ckpt):
            models.upload(local_ckpt, remote_ckpt)
        raise CancelledError(str(e)) from e
    except ValueError as e:  # a parent on another encoder, a checkpoint of another training, no data
        raise ApplicationError(str(e), type="DetectorMismatch", non_retryable=True) from e

    beat({"phase": "export"}, force=True)
    package_dir = os.path.join(local, "package")
    training_set_uri = store.uri(inp["trainingSet"])
    training_set_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
    package = export_detector(
        result["checkpoint"], package_dir, name=inp["modelName"], version=f"v{int(inp['version'])}",
        sam={"model": inp["sam"], "encoder_onnx_sha256": _encoder_sha256(models, inp["registry"], inp["sam"])},
        settings=_decode_settings(inp), grid=result["grid"],
        lineage={"parent": inp.get("parent"), "sam": inp["sam"],
                 "training_data": {"manifest": training_set_uri, "sha256": training_set_sha256}})
    files = {DETECTOR_FILE: os.path.join(package_dir, DETECTOR_FILE),
             CHECKPOINT_NAME: result["checkpoint"],
             "detector_log.jsonl": os.path.join(out_dir, "detector_log.jsonl")}
    uploaded = _upload_package(models, prefix, files, package, beat)
    return _checked("TrainDetectorResult", {
        "model": prefix, "modelJson": f"{prefix}/model.json",
        "trainingSetUri": training_set_uri, "trainingSetSha256": training_set_sha256,
        "steps": result["steps"], "finalLoss": result["final"].get("loss"),
        "seconds": result["seconds"], "parity": package["parity"]["onnx_vs_pytorch_max_abs_diff"],
        "files": uploaded})


@activity.defn(name="evaluateDetector")
def evaluate_detector_activity(inp: Dict[str, Any]) -> Dict[str, Any]:
    """COCO box AP/AR (class-agnostic) of a detector version on a manifest's holdout (else all of
    it); writes nothing."""
    from .detector_train import CHECKPOINT_NAME, evaluate_detector

    _checked("EvaluateDetectorInput", inp)
    store, models = open_store(inp["storage"]), open_store(inp["registry"])
    _, manifest = _manifest(store, inp["dataset"])
    split = manifest.get("holdout") or manifest
    beat = _heartbeat_every(5.0)
    data_key = _digest(inp["storage"], inp["dataset"])
    data_dir, ann_file = fetch_dataset(store, split, work_dir("eval-data", data_key), beat)
    ckpt = os.path.join(work_dir("eval-detector", _version_key(models, inp["registry"], inp["model"])),
                        CHECKPOINT_NAME)
    if not os.path.isfile(ckpt):
        models.download(posixpath.join(inp["model"], CHECKPOINT_NAME), ckpt)
    try:
        metrics = evaluate_detector(
            ckpt, _sam_checkpoint(models, inp["registry"], inp["sam"], beat), data_dir, ann_file=ann_file,
            max_images=inp.get("maxImages"), settings=_decode_settings(inp),
            embedding_cache=work_dir("eval-embeddings", data_key),
            progress=lambda n, total: beat({"phase": "embed", "done": n, "total": total}))
    except ValueError as e:  # a foreign checkpoint, or one trained on another encoder
        raise ApplicationError(str(e), type="DetectorMismatch", non_retryable=True) from e
    metrics["dataset"] = inp["dataset"]
    return _checked("EvaluateDetectorResult", metrics)


async def run_worker(address: str, namespace: str, task_queue: str, device: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address, namespace=namespace)
    # Training is CPU/GPU bound and runs in a thread; one activity at a time per worker process.
    with ThreadPoolExecutor(max_workers=1) as pool:
        worker = Worker(client, task_queue=task_queue, activities=[train_sam, evaluate_sam,
                                                                     train_detector_activity,
                                                                     evaluate_detector_activity],
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
