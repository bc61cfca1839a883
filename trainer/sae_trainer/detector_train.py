"""Training, evaluation and export of the box detector (detector.py) on a COCO-instance folder.

The detector reads a frozen SAM encoder's embeddings, computed once per image and cached on disk
(embedding_cache.py, keyed by the encoder's weights), so a training step is the head alone. A
detector belongs to the encoder it was trained on: the checkpoint and model.json record that
encoder's fingerprint, and the SAM package's encoder.onnx digest when it is known.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .data import CocoInstances, preprocess_image
from .detector import (ARCH, BoxHead, DecodeSettings, DetectorConfig, ExportedDetector, decode,
                       detector_loss, make_targets, stack_targets)
from .embedding_cache import EmbeddingCache, encoder_fingerprint
from .export import OPSET, _onnx_export
from .model import PATCH_SIZE, load_checkpoint, resolve_device
from .storage import file_sha256

CHECKPOINT_FORMAT = "sa-engine-detector-checkpoint/1"
PACKAGE_FORMAT = "sa-engine-detector/1"
DETECTOR_FILE = "detector.onnx"
CHECKPOINT_NAME = "detector.pt"


class DetectorTrainingCancelled(Exception):
    """The cancel flag was set; a checkpoint of the last finished step has been saved."""


@dataclass
class DetectorTrainConfig:
    data_dir: str
    out_dir: str
    sam_checkpoint: str  # the SAM model whose (frozen) encoder the detector reads
    ann_file: Optional[str] = None
    init_checkpoint: Optional[str] = None  # a detector to continue from (a retrain)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    lr_decay_at: tuple = (0.7, 0.9)
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 20
    embedding_cache: Optional[str] = None  # default <out_dir>/embeddings
    image_ids: Optional[List[int]] = None  # restrict to these images (a train split)
    resume: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.detector, dict):
            self.detector = DetectorConfig.from_dict(self.detector)
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("steps and batch_size must be positive")

    def identity(self, annotations_sha256: str) -> str:
        """What a resumed run must share with the checkpoint it resumes: everything but where the
        files go and how often it logs."""
        d = asdict(self)
        for volatile in ("out_dir", "data_dir", "ann_file", "embedding_cache", "log_every",
                         "checkpoint_every", "resume", "device"):
            d.pop(volatile)
        d["annotations_sha256"] = annotations_sha256
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


# --- data --------------------------------------------------------------------------------------

@dataclass
class ImageBoxes:
    embedding: torch.Tensor  # (C, G, G)
    boxes: np.ndarray  # (N, 4) x0 y0 x1 y1, exclusive ends, in the model frame
    scale: float  # model frame pixels per original pixel
    hw: tuple[int, int]  # original size


class EmbeddedBoxes:
    """The images of a dataset as (cached embedding, boxes in the model frame)."""

    def __init__(self, dataset: CocoInstances, encoder: torch.nn.Module, cache_dir: str,
                 image_size: int) -> None:
        self.dataset = dataset
        self.cache = EmbeddingCache(cache_dir, encoder)
        self.image_size = image_size
        self._boxes: Dict[int, tuple[np.ndarray, float, tuple[int, int]]] = {}

    def __getitem__(self, image_id: int) -> ImageBoxes:
        if image_id not in self._boxes:
            sample = self.dataset.load(image_id)
            h, w = sample.image.shape[:2]
            scale = self.image_size / max(h, w)
            inclusive = sample.masks.boxes() if len(sample.masks) else np.zeros((0, 4), np.float32)
            boxes = (inclusive + np.array([0, 0, 1, 1], np.float32)) * scale
            image = preprocess_image(sample.image, self.image_size)[0]
            embedding = self.cache.get(image_id, image)
            self._boxes[image_id] = (boxes, scale, (h, w))
            return ImageBoxes(embedding, boxes, scale, (h, w))
        boxes, scale, hw = self._boxes[image_id]
        return ImageBoxes(self.cache.get(image_id, None), boxes, scale, hw)


def _dataset(cfg_data: str, ann_file: Optional[str], image_ids: Optional[Sequence[int]]) -> CocoInstances:
    return CocoInstances(cfg_data, ann_file, image_ids=image_ids)


def learning_rate(cfg: DetectorTrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * 0.1 ** sum(step >= f * cfg.steps for f in cfg.lr_decay_at)


# --- checkpoints -------------------------------------------------------------------------------

def save_detector(path: str, head: BoxHead, cfg: DetectorConfig, **extra: Any) -> None:
    tmp = path + f".tmp{os.getpid()}"
    torch.save({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "model": head.state_dict(),
                **extra}, tmp)
    os.replace(tmp, path)  # a reader never sees half a checkpoint


def load_detector(path: str) -> tuple[BoxHead, DetectorConfig, Dict[str, Any]]:
    """A detector checkpoint, loaded as data (weights_only): a foreign file is refused, not run."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a detector checkpoint ({e.__class__.__name__}: {e})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a detector checkpoint (format "
                         f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    cfg = DetectorConfig.from_dict(ckpt["config"])
    head = BoxHead(cfg)
    head.load_state_dict(ckpt["model"])
    head.eval()
    return head, cfg, {k: v for k, v in ckpt.items() if k not in ("config", "model")}


# --- training ----------------------------------------------------------------------------------

def train_detector(cfg: DetectorTrainConfig,
                   progress: Optional[Callable[[Dict[str, Any]], None]] = None,
                   cancel: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Train the head; returns {"checkpoint", "steps", "seconds", "final", "encoder_fingerprint",
    "grid" (the embedding's side)}.
    A run whose out_dir holds a checkpoint of the same identity continues from it."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = resolve_device(cfg.device)
    os.makedirs(cfg.out_dir, exist_ok=True)
    sam, sam_cfg, _ = load_checkpoint(cfg.sam_checkpoint)
    encoder = sam.image_encoder.to(device).eval()
    fingerprint = encoder_fingerprint(encoder)
    dataset = _dataset(cfg.data_dir, cfg.ann_file, cfg.image_ids)
    if len(dataset) == 0:
        raise ValueError(f"{cfg.data_dir}: no image with a usable mask to train the detector on")
    source = EmbeddedBoxes(dataset, encoder, cfg.embedding_cache or os.path.join(cfg.out_dir, "embeddings"),
                           sam_cfg.image_size)
    identity = cfg.identity(file_sha256(dataset.ann_file))

    head, det_cfg = BoxHead(cfg.detector), cfg.detector
    if cfg.init_checkpoint:
        head, det_cfg, parent = load_detector(cfg.init_checkpoint)
        if parent.get("encoder_fingerprint") not in (None, fingerprint):
            raise ValueError(f"{cfg.init_checkpoint} was trained on another SAM encoder's embeddings; "
                             "a detector can only continue on the encoder it was trained on")
    head.to(device).train()
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    ckpt_path = os.path.join(cfg.out_dir, CHECKPOINT_NAME)
    if cfg.resume and os.path.isfile(ckpt_path):
        resumed, _, extra = load_detector(ckpt_path)
        if extra.get("identity") != identity:
            raise ValueError(f"{ckpt_path} belongs to another training (config or data differ); "
                             "remove it or use another output folder")
        head.load_state_dict(resumed.state_dict())
        optimizer.load_state_dict(extra["optimizer"])
        start = int(extra["step"])
        rng = np.random.default_rng([cfg.seed, start])

    t0 = time.time()
    ids = list(dataset.image_ids)
    for n, image_id in enumerate(ids, start=1):  # embeddings first: the cost of a first run
        source[image_id]
        if progress:
            progress({"phase": "embed", "done": n, "total": len(ids)})
        if cancel and cancel():
            raise DetectorTrainingCancelled("cancelled while computing embeddings")

    grid = sam_cfg.image_size // PATCH_SIZE
    last: Dict[str, float] = {}
    log = open(os.path.join(cfg.out_dir, "detector_log.jsonl"), "a")
    for step in range(start, cfg.steps):
        batch = [source[int(i)] for i in rng.choice(ids, size=min(cfg.batch_size, len(ids)), replace=False)]
        embeddings = torch.stack([b.embedding for b in batch]).to(device)
        targets = stack_targets([make_targets(b.boxes, grid) for b in batch])
        targets = type(targets)(*(t.to(device) for t in (targets.heatmap, targets.size,
                                                         targets.offset, targets.centres)))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        losses = detector_loss(head(embeddings), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
        optimizer.step()
        last = {k: float(v) for k, v in losses.items()}
        done = step + 1
        checkpointed = done % cfg.checkpoint_every == 0 or done == cfg.steps
        stopping = bool(cancel and cancel())
        if checkpointed or stopping:
            save_detector(ckpt_path, head, det_cfg, step=done, identity=identity,
                          optimizer=optimizer.state_dict(), encoder_fingerprint=fingerprint)
        if done % cfg.log_every == 0 or done == cfg.steps:
            log.write(json.dumps({"step": done, **last, "lr": learning_rate(cfg, step)}) + "\n")
            log.flush()
        if progress:
            progress({"phase": "train", "step": done, "steps": cfg.steps, **last,
                      "checkpointed": checkpointed or stopping})
        if stopping:
            raise DetectorTrainingCancelled(f"cancelled after step {done}")
    log.close()
    return {"checkpoint": ckpt_path, "steps": cfg.steps, "seconds": time.time() - t0,
            "final": last, "encoder_fingerprint": fingerprint, "grid": grid}


# --- evaluation --------------------------------------------------------------------------------

COCO_FIGURES = {"AP": 0, "AP50": 1, "AP75": 2, "AP_small": 3, "AP_medium": 4, "AP_large": 5,
                "AR1": 6, "AR10": 7, "AR100": 8}


@torch.no_grad()
def detections(head: BoxHead, source: EmbeddedBoxes, ids: Sequence[int],
               settings: DecodeSettings) -> List[Dict[str, Any]]:
    """COCO results (xywh, original pixels, category 1) of the exported detector's decode."""
    exported = ExportedDetector(head).eval()
    results = []
    for image_id in ids:
        item = source[image_id]
        scores, boxes = exported(item.embedding[None])
        found, values = decode(scores, boxes, item.scale, item.hw, settings)
        for (x0, y0, x1, y1), score in zip(found.tolist(), values.tolist()):
            results.append({"image_id": int(image_id), "category_id": 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return results


def coco_box_figures(gt: COCO, results: List[Dict[str, Any]], ids: Sequence[int]) -> Dict[str, float]:
    """pycocotools COCOeval on boxes, class-agnostic (useCats = 0): AP, AP50, AR@100 and the rest."""
    if not results:
        return {name: 0.0 for name in COCO_FIGURES}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.useCats = 0
        ev.params.imgIds = list(ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: max(0.0, float(ev.stats[i])) for name, i in COCO_FIGURES.items()}


def evaluate_detector(detector_checkpoint: str, sam_checkpoint: str, data_dir: str,
                      ann_file: Optional[str] = None, image_ids: Optional[Sequence[int]] = None,
                      max_images: Optional[int] = None, settings: Optional[DecodeSettings] = None,
                      embedding_cache: Optional[str] = None,
                      progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    head, _, extra = load_detector(detector_checkpoint)
    sam, sam_cfg, _ = load_checkpoint(sam_checkpoint)
    encoder = sam.image_encoder.eval()
    fingerprint = encoder_fingerprint(encoder)
    if extra.get("encoder_fingerprint") not in (None, fingerprint):
        raise ValueError(f"{detector_checkpoint} was trained on another SAM encoder "
                         f"({extra['encoder_fingerprint']}, this one is {fingerprint})")
    dataset = _dataset(data_dir, ann_file, image_ids)
    ids = dataset.image_ids[:max_images] if max_images else dataset.image_ids
    cache = embedding_cache or os.path.join(os.path.dirname(os.path.abspath(detector_checkpoint)), "embeddings")
    source = EmbeddedBoxes(dataset, encoder, cache, sam_cfg.image_size)
    for n, image_id in enumerate(ids, start=1):
        source[image_id]
        if progress:
            progress(n, len(ids))
    settings = settings or DecodeSettings()
    results = detections(head, source, ids, settings)
    figures = coco_box_figures(dataset.coco, results, ids)
    boxes = sum(len(source[i].boxes) for i in ids)
    return {"images": len(ids), "boxes": boxes, "detections": len(results), **figures,
            "settings": asdict(settings), "protocol": "pycocotools COCOeval, iouType bbox, useCats 0"}


# --- export ------------------------------------------------------------------------------------

def export_detector(checkpoint: str, out_dir: str, name: Optional[str] = None,
                    version: Optional[str] = None, sam: Optional[Dict[str, Any]] = None,
                    settings: Optional[DecodeSettings] = None,
                    metrics: Optional[Dict[str, Any]] = None,
                    lineage: Optional[Dict[str, Any]] = None, grid: int = 64) -> Dict[str, Any]:
    """Write detector.onnx and model.json (format sa-engine-detector/1) to out_dir; checks ONNX
    against PyTorch on random embeddings and returns the package description."""
    import onnxruntime as ort

    head, cfg, extra = load_detector(checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, DETECTOR_FILE)
    module = ExportedDetector(head).eval()
    example = torch.randn(2, cfg.embed_dim, grid, grid, generator=torch.Generator().manual_seed(0))
    _onnx_export(module, (example,), path, ["image_embeddings"], ["scores", "boxes"],
                 {"image_embeddings": {0: "batch"}, "scores": {0: "batch"}, "boxes": {0: "batch"}},
                 OPSET)
    with torch.no_grad():
        expected = module(example)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
        ["scores", "boxes"], {"image_embeddings": example.numpy()})
    parity = {out: float(np.abs(g - e.numpy()).max()) for out, g, e in zip(("scores", "boxes"), got, expected)}
    size = grid * PATCH_SIZE
    package = {
        "format": PACKAGE_FORMAT, "name": name, "version": version, "arch": ARCH,
        "file": DETECTOR_FILE, "opset": OPSET, "image_size": size, "stride": PATCH_SIZE,
        "config": cfg.to_dict(),
        "input": {"name": "image_embeddings", "dtype": "float32",
                  "shape": ["batch", cfg.embed_dim, grid, grid],
                  "meaning": "the SAM encoder's image embedding (the SAM package named in `sam`)"},
        "outputs": [
            {"name": "scores", "dtype": "float32", "shape": ["batch", 1, grid, grid],
             "meaning": "chance that an object's centre lies in the cell"},
            {"name": "boxes", "dtype": "float32", "shape": ["batch", 4, grid, grid],
             "meaning": f"x0 y0 x1 y1 of that object in pixels of the {size}x{size} model frame"}],
        "sam": {"encoder_fingerprint": extra.get("encoder_fingerprint"), **(sam or {})},
        "decode": asdict(settings or DecodeSettings()),
        "metrics": metrics or {},
        "parity": {"onnx_vs_pytorch_max_abs_diff": parity, "runtime": "onnxruntime CPU"},
        "lineage": {"steps": extra.get("step"), **(lineage or {})},
    }
    tmp = os.path.join(out_dir, f"model.json.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(package, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "model.json"))
    return package
