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
  writes <name>/v<k>/{encoder.onnx, decoder.onnx, decoder_batched.onnx, decoder_folded.onnx,
  checkpoint.pt, train_log.jsonl, model.json} in the registry, heartbeats {"phase", ...} through
  download, training, export and upload, uploads a resumable checkpoint to <name>/v<k>/train/ so a
  retry (on any machine) continues where the last attempt stopped, and honours cancellation. The registry's
  lineage.json, which makes the version complete, is the workflow's to write.

evaluateSam input (EvaluateSamInput):
    {"storage", "dataset": "<manifest key>", "registry", "model": "<name>/v<k>",
     "maxImages", "maxMasksPerImage", "maxClicks"}
  evaluates the manifest's holdout (else all of it) and returns the figures; writes nothing.

Both run on the worker host's device: `worker --device` or SAE_TRAIN_DEVICE (default auto: the
GPU when PyTorch sees one).

The worker process (`python -m sae_trainer worker`, run_worker below) is the same on a laptop and in
a Kubernetes pod (infra/docker/trainer.Dockerfile):
  - `--health-port N` (SAE_HEALTH_PORT): GET /healthz answers 200 while the process lives, GET
    /readyz 200 once the worker polls its queue and 503 again from SIGTERM on.
  - SIGTERM or SIGINT: stop polling, let the activity in flight finish for up to `--shutdown-grace`
    seconds (SAE_SHUTDOWN_GRACE_SECONDS, default 300), then cancel it: a training activity uploads
    its last checkpoint and fails as `WorkerShutdown`, which the workflow retries on another worker
    from that checkpoint. A second signal ends the process at once.
  - `--deployment-name` with `--build-id` (SAE_DEPLOYMENT_NAME, SAE_BUILD_ID): Worker Versioning.
  - Temporal Cloud or a TLS frontend: TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH /
    _CLIENT_KEY_PATH / _SERVER_CA_CERT_PATH / _SERVER_NAME, as lib/temporal-auth.ts reads them for the
    TypeScript workers (connect_options).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import posixpath
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Mapping, Optional

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from .contract import ContractError, check
from .storage import check_key, file_sha256, open_store

TASK_QUEUE = "sae-gpu-training"
DEVICE_ENV = "SAE_TRAIN_DEVICE"
# The ONNX graphs export_package writes (its model.json names each), uploaded with the package.
PACKAGE_GRAPHS = ("encoder.onnx", "decoder.onnx", "decoder_batched.onnx", "decoder_folded.onnx")


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


# trainSam, evaluateSam and trainDetector stop on a cancel themselves: they look at
# activity.is_cancelled() between steps (and images), save a checkpoint of the last finished step,
# upload it, and raise. They are declared with no_thread_cancel_exception, or temporalio would raise
# CancelledError into their thread wherever it happens to be (mid-step, mid-upload), and the steps
# since the last periodic checkpoint would be lost. evaluateDetector writes nothing and keeps the
# default.
def _cancelled(message: str) -> Exception:
    """What an activity raises once it has stopped on a cancel. When the cancel came from this
    worker's shutdown (its grace period ran out) and not from the workflow, a retryable failure: the
    workflow's retry policy runs the activity again on another worker, from the checkpoint it has
    just uploaded. Reported as a cancellation instead, the attempt would look as if the workflow had
    asked for it."""
    details = activity.cancellation_details()
    if details is not None and details.worker_shutdown and not details.cancel_requested:
        return ApplicationError(f"the worker shut down: {message}", type="WorkerShutdown")
    return CancelledError(message)


def _check_cancel() -> None:
    if activity.is_cancelled():
        raise _cancelled("activity cancelled")


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


def _data_key(store, inp: Dict[str, Any], split: Dict[str, Any]) -> str:
    """An evaluation set's key in this host's caches: where it is and what its annotations hold. A
    run recreated under the same id writes other images and masks under the same keys; keyed by
    location alone, its evaluation would read the earlier run's cached images."""
    annotations = hashlib.sha256(store.get_bytes(split["annotations"])).hexdigest()
    return _digest(inp["storage"], inp["dataset"], annotations)


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


@activity.defn(name="trainSam", no_thread_cancel_exception=True)
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
        raise _cancelled(str(e)) from e

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
    files = {name: os.path.join(package_dir, name) for name in PACKAGE_GRAPHS}
    files.update({"checkpoint.pt": result["checkpoint"],
                  "train_log.jsonl": os.path.join(out_dir, "train_log.jsonl")})
    uploaded = _upload_package(models, prefix, files, package, beat)
    return _checked("TrainSamResult", {
        "model": prefix, "modelJson": f"{prefix}/model.json",
        "trainingSetUri": training_set_uri, "trainingSetSha256": training_set_sha256,
        "steps": result["steps"],
        "finalLoss": result["final"].get("loss"), "seconds": result["seconds"],
        "parity": package["parity"]["onnx_vs_pytorch_max_abs_diff"], "files": uploaded})


@activity.defn(name="evaluateSam", no_thread_cancel_exception=True)
def evaluate_sam(inp: Dict[str, Any]) -> Dict[str, Any]:
    from .data import CocoInstances
    from .evaluate import evaluate
    from .model import load_checkpoint, resolve_device

    _checked("EvaluateSamInput", inp)
    store = open_store(inp["storage"])
    models = open_store(inp["registry"])
    _, manifest = _manifest(store, inp["dataset"])
    split = manifest.get("holdout") or manifest
    # The data by what it is, the checkpoint by its version: both are fetched once per host.
    data_dir, ann_file = fetch_dataset(store, split, work_dir("eval-data", _data_key(store, inp, split)),
                                       _heartbeat_every(5.0))
    ckpt = os.path.join(work_dir("eval-model", _version_key(models, inp["registry"], inp["model"])),
                        "checkpoint.pt")
    if not os.path.isfile(ckpt):
        models.download(posixpath.join(inp["model"], "checkpoint.pt"), ckpt)
    sam, _, _ = load_checkpoint(ckpt)
    sam.to(resolve_device(worker_device()))

    beat = _heartbeat_every(5.0)
    try:
        metrics = evaluate(sam, CocoInstances(data_dir, ann_file), max_images=inp.get("maxImages"),
                           max_masks_per_image=inp.get("maxMasksPerImage"),
                           max_clicks=int(inp.get("maxClicks", 20)),
                           progress=lambda n, total: beat({"phase": "evaluate", "done": n,
                                                           "total": total}),
                           cancel=activity.is_cancelled)
    except InterruptedError as e:  # evaluate() stopped on the cancel flag
        raise _cancelled(str(e)) from e
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


@activity.defn(name="trainDetector", no_thread_cancel_exception=True)
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
        raise _cancelled(str(e)) from e
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
    data_key = _data_key(store, inp, split)
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


# --- the worker process -------------------------------------------------------------------------

HEALTH_PORT_ENV = "SAE_HEALTH_PORT"
SHUTDOWN_GRACE_ENV = "SAE_SHUTDOWN_GRACE_SECONDS"
DEPLOYMENT_NAME_ENV = "SAE_DEPLOYMENT_NAME"
BUILD_ID_ENV = "SAE_BUILD_ID"
# Long enough for a training step, a checkpoint upload or an ONNX export to end; a pod's
# terminationGracePeriodSeconds must be longer than this.
DEFAULT_SHUTDOWN_GRACE_SECONDS = 300.0

# Temporal's own variable names (its CLI and SDKs read the same), as lib/temporal-auth.ts has them.
API_KEY_ENV = "TEMPORAL_API_KEY"
TLS_ENV = "TEMPORAL_TLS"
TLS_CLIENT_CERT_ENV = "TEMPORAL_TLS_CLIENT_CERT_PATH"
TLS_CLIENT_KEY_ENV = "TEMPORAL_TLS_CLIENT_KEY_PATH"
TLS_SERVER_CA_ENV = "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
TLS_SERVER_NAME_ENV = "TEMPORAL_TLS_SERVER_NAME"


def _non_empty(value: Optional[str]) -> Optional[str]:
    return value if value is not None and value.strip() else None


def _read_pem(path: str, variable: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path} ({variable}): {e.strerror or e}") from e


def connect_options(env: Mapping[str, str]) -> Dict[str, Any]:
    """Client.connect's keyword arguments for the authentication `env` asks for: {} (plaintext: the
    dev stack, a cluster-internal frontend), {"tls": True} (TLS with the system's roots), or a
    TLSConfig for mTLS, a private CA or a server name; plus "api_key" for Temporal Cloud's API keys.

    The same rules as lib/temporal-auth.ts: TEMPORAL_TLS=true turns TLS on with nothing else set; an
    API key or any TLS file implies TLS (TEMPORAL_TLS=false with one of them is an error); the client
    certificate and its key come as a pair or not at all. Raises ValueError, naming the variable."""
    api_key = _non_empty(env.get(API_KEY_ENV))
    cert = _non_empty(env.get(TLS_CLIENT_CERT_ENV))
    key = _non_empty(env.get(TLS_CLIENT_KEY_ENV))
    ca = _non_empty(env.get(TLS_SERVER_CA_ENV))
    server_name = _non_empty(env.get(TLS_SERVER_NAME_ENV))
    switch_text = _non_empty(env.get(TLS_ENV))
    switch = None
    if switch_text is not None:
        if switch_text.strip().lower() in ("true", "1"):
            switch = True
        elif switch_text.strip().lower() in ("false", "0"):
            switch = False
        else:
            raise ValueError(f"{TLS_ENV} must be true or false, got {switch_text!r}")

    if (cert is None) != (key is None):
        raise ValueError(f"mTLS needs both {TLS_CLIENT_CERT_ENV} and {TLS_CLIENT_KEY_ENV}, or neither "
                         f"({TLS_CLIENT_CERT_ENV if cert is None else TLS_CLIENT_KEY_ENV} is not set)")
    wants_tls = any(v is not None for v in (api_key, cert, ca, server_name))
    if switch is False and wants_tls:
        raise ValueError(f"{TLS_ENV}=false, but an API key or TLS files are set: they need TLS")
    if not wants_tls and switch is not True:
        return {}

    from temporalio.service import TLSConfig

    tls: Any = True
    if cert is not None or ca is not None or server_name is not None:
        tls = TLSConfig(
            client_cert=_read_pem(cert, TLS_CLIENT_CERT_ENV) if cert is not None else None,
            client_private_key=_read_pem(key, TLS_CLIENT_KEY_ENV) if key is not None else None,
            server_root_ca_cert=_read_pem(ca, TLS_SERVER_CA_ENV) if ca is not None else None,
            domain=server_name)
    options: Dict[str, Any] = {"tls": tls}
    if api_key is not None:
        options["api_key"] = api_key
    return options


def describe_connection(options: Mapping[str, Any]) -> str:
    """For logs: how the worker connects, without the secrets (lib/temporal-auth.ts's wording)."""
    tls = options.get("tls")
    if not tls:
        return "plaintext"
    if options.get("api_key"):
        return "TLS + API key"
    return "mTLS" if getattr(tls, "client_cert", None) else "TLS"


class HealthServer:
    """GET /healthz (200 while the process lives) and GET /readyz (200 while `ready()` says so, else
    503) on host:port, served from a daemon thread; port 0 takes a free one (see `port`)."""

    def __init__(self, port: int, host: str = "0.0.0.0",
                 ready: Callable[[], bool] = lambda: False) -> None:
        self.ready = ready
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._answer(200, {"status": "ok"})
                elif path == "/readyz":
                    try:
                        ok = bool(server.ready())
                    except Exception:  # a probe must answer, whatever the worker's state
                        ok = False
                    self._answer(200 if ok else 503, {"status": "ready" if ok else "not ready"})
                else:
                    self._answer(404, {"status": "not found"})

            def _answer(self, code: int, body: Dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a probe every few seconds is not news

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sae-health",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class WorkerSettings:
    address: str
    namespace: str
    task_queue: str
    device: str
    health_port: Optional[int] = None
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    deployment_name: Optional[str] = None
    build_id: Optional[str] = None


def versioning_options(deployment_name: Optional[str], build_id: Optional[str]) -> Dict[str, Any]:
    """Worker's keyword arguments for Worker Versioning: none without a deployment, else this build
    as a version of it. This worker runs activities only, so default_versioning_behavior (which
    says whether a workflow stays on the version it started on) stays UNSPECIFIED, as temporalio
    allows for a worker without workflows; the workflows' own workers choose theirs."""
    if (deployment_name is None) != (build_id is None):
        raise ValueError("Worker Versioning needs both --deployment-name and --build-id "
                         f"({DEPLOYMENT_NAME_ENV}, {BUILD_ID_ENV}), or neither")
    if deployment_name is None:
        return {}
    from temporalio.common import WorkerDeploymentVersion
    from temporalio.worker import WorkerDeploymentConfig

    return {"deployment_config": WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(deployment_name=deployment_name, build_id=build_id),
        use_worker_versioning=True)}


async def run_worker(settings: WorkerSettings, connect: Optional[Dict[str, Any]] = None) -> None:
    """Serves the training queue until SIGTERM or SIGINT, then drains (see the module docstring)."""
    from temporalio.client import Client
    from temporalio.worker import Worker

    connect = connect if connect is not None else connect_options(os.environ)
    versioning = versioning_options(settings.deployment_name, settings.build_id)
    stopping = threading.Event()
    announced = threading.Event()  # the ready line is in the log
    worker: Optional[Worker] = None
    health = None
    if settings.health_port is not None:
        # Up before the connection: /healthz answers while the process lives, /readyz once it polls
        # and has said so in its log (so a probe and the log agree).
        health = HealthServer(settings.health_port, ready=lambda: bool(
            announced.is_set() and worker is not None and worker.is_running and not stopping.is_set()))
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT)
    try:
        client = await Client.connect(settings.address, namespace=settings.namespace, **connect)
        # Training is CPU/GPU bound and runs in a thread; one activity at a time per worker process.
        with ThreadPoolExecutor(max_workers=1) as pool:
            worker = Worker(client, task_queue=settings.task_queue,
                            activities=[train_sam, evaluate_sam, train_detector_activity,
                                        evaluate_detector_activity],
                            activity_executor=pool, max_concurrent_activities=1,
                            graceful_shutdown_timeout=timedelta(
                                seconds=settings.shutdown_grace_seconds),
                            **versioning)
            shutdown_task = []

            def on_signal(signum: int) -> None:
                name = signal.Signals(signum).name
                if stopping.is_set():  # a second signal: stop now, as if none were handled
                    print(f"sae-trainer worker: {name} again: stopping at once", flush=True)
                    signal.signal(signum, signal.SIG_DFL)
                    os.kill(os.getpid(), signum)
                    return
                stopping.set()
                print(f"sae-trainer worker: {name}: polling stopped; an activity in flight has "
                      f"{settings.shutdown_grace_seconds:g} s to finish before it is cancelled",
                      flush=True)
                shutdown_task.append(loop.create_task(worker.shutdown()))

            for signum in handled:
                loop.add_signal_handler(signum, on_signal, signum)
            run = loop.create_task(worker.run())
            # Ready once the worker has checked its namespace and its pollers start.
            while not worker.is_running and not run.done():
                await asyncio.sleep(0.05)
            if worker.is_running:
                extra = "".join([
                    f", build {settings.build_id} of {settings.deployment_name}" if versioning else "",
                    f", health on {health.url}" if health else ""])
                print(f"sae-trainer worker: {settings.address} namespace {settings.namespace} "
                      f"queue {settings.task_queue} device {settings.device} "
                      f"({describe_connection(connect)}{extra})", flush=True)
                announced.set()
            await run
            if stopping.is_set():
                print("sae-trainer worker: stopped", flush=True)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        if health is not None:
            health.close()


def worker_device() -> str:
    """The device is the worker host's, not the workflow's: a GPU host's worker trains on its GPU."""
    return os.environ.get(DEVICE_ENV, "auto")


def _setting(args, name: str, env: str) -> Optional[str]:
    """A flag, else its environment variable; an empty value counts as unset."""
    value = getattr(args, name, None)
    return _non_empty(value if value is not None else os.environ.get(env))


def worker_settings(args, device: str) -> WorkerSettings:
    """The worker's settings from its flags and the environment (a flag wins)."""
    port = _setting(args, "health_port", HEALTH_PORT_ENV)
    grace = _setting(args, "shutdown_grace", SHUTDOWN_GRACE_ENV)
    try:
        health_port = int(port) if port is not None else None
        if health_port is not None and not 0 <= health_port <= 65535:
            raise ValueError
    except ValueError:
        raise ValueError(f"--health-port ({HEALTH_PORT_ENV}) must be a port number, got {port!r}") from None
    try:
        grace_seconds = float(grace) if grace is not None else DEFAULT_SHUTDOWN_GRACE_SECONDS
        if not grace_seconds >= 0:  # also refuses nan
            raise ValueError
    except ValueError:
        raise ValueError(f"--shutdown-grace ({SHUTDOWN_GRACE_ENV}) must be seconds >= 0, "
                         f"got {grace!r}") from None
    settings = WorkerSettings(
        address=getattr(args, "address", None) or os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"),
        namespace=getattr(args, "namespace", None) or os.environ.get("TEMPORAL_NAMESPACE", "default"),
        task_queue=getattr(args, "task_queue", None) or os.environ.get("SAE_TRAINING_TASK_QUEUE",
                                                                        TASK_QUEUE),
        device=device, health_port=health_port, shutdown_grace_seconds=grace_seconds,
        deployment_name=_setting(args, "deployment_name", DEPLOYMENT_NAME_ENV),
        build_id=_setting(args, "build_id", BUILD_ID_ENV))
    versioning_options(settings.deployment_name, settings.build_id)  # both or neither, before connecting
    return settings


def main(args) -> None:
    from .model import resolve_device

    if args.device:
        os.environ[DEVICE_ENV] = args.device
    device = resolve_device(worker_device())  # a host without the asked-for device fails at start
    settings = worker_settings(args, str(device))
    connect = connect_options(os.environ)  # bad TLS settings fail here, before any connection
    asyncio.run(run_worker(settings, connect))
