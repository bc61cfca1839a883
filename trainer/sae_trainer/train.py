"""Training loop: SAM's simulated interactive segmentation (paper §3) on a COCO-instance folder.

Two modes:
* `full`: image encoder + prompt encoder + mask decoder, images encoded every step.
* `decoder`: the image encoder is frozen and its embeddings cached once on disk; only the prompt
  encoder and mask decoder train (the fast retraining path of the data engine).

Memory stays bounded however many masks and iterations a step has: each decoder iteration is
back-propagated on its own into a detached copy of the image embeddings, whose accumulated gradient
is then pushed through the encoder once. This gives exactly the gradient of the summed loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.utils.deterministic

from .data import (CocoInstances, Sample, downsample_masks, instance_boxes, preprocess_image,
                   resize_masks)
from .losses import region_contrast_loss, sam_loss
from .model import (PATCH_SIZE, ModelConfig, PromptDecoder, build_sam, init_from_scratch,
                    load_checkpoint, resolve_device, save_checkpoint, with_colour_cells,
                    with_deeper_stages)
from .prompts import FirstPrompt, PromptSet, iteration_schedule

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.jsonl"


class TrainingCancelled(Exception):
    """Raised when the cancel flag is set; a checkpoint of the last finished step has been saved."""


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    ann_file: Optional[str] = None
    mode: str = "full"  # "full" or "decoder"
    init_checkpoint: Optional[str] = None  # parent model: ours or an official SAM state dict
    init_encoder: Optional[str] = None  # ViT name for an official checkpoint (else inferred)
    model: ModelConfig = field(default_factory=ModelConfig)  # used when there is no parent
    steps: int = 1000
    batch_size: int = 4  # images per step
    masks_per_image: int = 8  # masks sampled per image per step (SAM: up to 64 per GPU)
    num_points: int = 8  # corrective points; iterations = 1 + num_points + 2
    refinements: bool = True  # the paper's 2 iterations without a new point
    # Train on square windows of this side (a multiple of 16) holding the sampled masks whole, at
    # the model's full scale: the decoder cost falls with the window's area (4x for 512 of 1024).
    crop_size: Optional[int] = None
    # With crop_size: make each window this many times the longer side of the mask it is built
    # around (at least crop_size, at most the whole image), so that large objects are trained too.
    crop_context: Optional[float] = None
    # Windows are built around a mask drawn with probability ~ box area ** anchor_power.
    anchor_power: float = 0.0
    # First prompts (paper: half boxes, points uniform over the mask). A model trained from scratch
    # on a CPU budget learns far faster from points deep inside the mask first (point_depth 0.5):
    # a mask centred on its prompt can be placed from position alone, before the encoder has
    # learnt to tell objects apart.
    box_probability: float = 0.5
    point_depth: float = 0.0
    init_embedding_scale: float = 0.1  # a fresh model's initial embedding size (init_from_scratch)
    # Weight of an auxiliary loss on the encoder (not the paper's): a supervised contrastive loss
    # that pulls the embedding cells of each annotated region together. It supervises every cell of
    # every image, where the mask losses reach the encoder only through a few masks per image
    # (measured: no clear gain over 100 steps at weight 1; trainer/README.md). 0: the paper's only.
    region_loss_weight: float = 0.0
    lr: float = 8e-4  # SAM's AdamW settings
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.999)
    warmup_steps: int = 50
    lr_decay_at: tuple = (2 / 3, 8 / 9)  # x0.1 at these fractions of the run (SAM's step decay)
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    embedding_cache: Optional[str] = None  # decoder mode; default <out_dir>/embeddings
    image_ids: Optional[List[int]] = None  # restrict to these images (e.g. a train split)
    resume: bool = True  # continue from <out_dir>/checkpoint.pt when present (activity retries)
    # Where the model trains (model.resolve_device). Examples and prompts are made on the CPU
    # either way; checkpoints load on any device.
    device: str = "auto"
    # Stop (with a checkpoint) after the first step that ends past this many seconds of the run:
    # a lease on a lent machine ends at a fixed time, whatever the step rate. The lr schedule
    # stays in steps, so a run cut short ends before its last decays.
    max_seconds: Optional[float] = None
    # Threads that make a batch's examples (decode, resize, crop) side by side, and the next
    # step's batch while this one computes: on a GPU they are most of a step otherwise. Each
    # example draws from its own generator seeded from the run's, so results do not depend on it.
    loader_threads: int = 1
    # Decoder mode: train only the parameters whose names start with one of these prefixes
    # (e.g. "mask_decoder.output_hypernetworks_mlps.0." and "prompt_encoder.mask_downscaling."
    # retrain corrective clicks and leave a single click's outputs exactly as they were).
    train_only: Optional[Tuple[str, ...]] = None

    def __post_init__(self) -> None:
        if self.mode not in ("full", "decoder"):
            raise ValueError(f"mode must be 'full' or 'decoder', got {self.mode!r}")
        if self.train_only is not None:
            self.train_only = tuple(self.train_only)
            if self.mode != "decoder" or not self.train_only:
                raise ValueError("train_only needs mode 'decoder' and at least one prefix")
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.loader_threads < 1:
            raise ValueError(f"loader_threads must be at least 1, got {self.loader_threads}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.crop_size is not None and (self.crop_size <= 0 or self.crop_size % PATCH_SIZE):
            raise ValueError(f"crop_size must be a positive multiple of {PATCH_SIZE}, "
                             f"got {self.crop_size}")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


ProgressFn = Callable[[Dict[str, Any]], None]
CancelFn = Callable[[], bool]


# --- one training example ------------------------------------------------------------------------

@dataclass
class Example:
    """One image ready for training: model input, and its sampled masks in the training window.

    Without a crop the window is the whole model input. With one it is a square of `crop` pixels at
    `offset` (x, y) in the model input frame, aligned to the embedding grid, that contains every mask.
    """

    image_id: int
    image: torch.Tensor  # (3, S, S) normalised, padded: the whole model input
    masks: np.ndarray  # (M, C, C) bool: first prompts are sampled at full model resolution
    masks_low: torch.Tensor  # (M, C/4, C/4) {0,1}: loss targets and error regions
    offset: Tuple[int, int] = (0, 0)
    crop: Optional[int] = None
    regions: Optional[torch.Tensor] = None  # (h, w) region of each embedding cell, -1 for none

    def window(self, t: torch.Tensor, stride: int = 1) -> torch.Tensor:
        return crop_window(t, self.offset, self.crop, stride)


def crop_window(t: torch.Tensor, offset: Tuple[int, int], crop: Optional[int],
                stride: int = 1) -> torch.Tensor:
    """The window's part of a (..., S/stride, S/stride) map of the whole model input."""
    if crop is None:
        return t
    x, y, c = offset[0] // stride, offset[1] // stride, crop // stride
    return t[..., y:y + c, x:x + c]


def model_frame_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """(M, 4) XYXY boxes on pixel indices -> boxes in the model input frame covering whole pixels."""
    return (boxes + np.array([0, 0, 1, 1])) * scale


def window_side(box: np.ndarray, min_side: int, context: float, image_size: int) -> int:
    """Side of a window that shows `box` with `context` times its longer side of surroundings: a
    multiple of the embedding stride, at least `min_side`, at most the whole model input."""
    longer = max(box[2] - box[0], box[3] - box[1])
    side = int(np.ceil(context * longer / PATCH_SIZE)) * PATCH_SIZE
    return int(np.clip(side, min_side, image_size))


def choose_window(box: np.ndarray, image_size: int, crop: int,
                  rng: np.random.Generator) -> Tuple[int, int]:
    """Top-left (x, y) of a crop-sized window on the embedding grid that holds the box whole
    (centred on it when it is bigger than the window)."""
    corner = []
    for lo_edge, hi_edge in ((box[0], box[2]), (box[1], box[3])):
        lo, hi = max(0.0, hi_edge - crop), min(lo_edge, image_size - crop)
        grid = np.arange(int(np.ceil(lo / PATCH_SIZE)), int(np.floor(hi / PATCH_SIZE)) + 1) * PATCH_SIZE
        if len(grid):
            corner.append(int(rng.choice(grid)))
        else:
            centre = (lo_edge + hi_edge - crop) / 2
            corner.append(int(np.clip(round(centre / PATCH_SIZE) * PATCH_SIZE, 0, image_size - crop)))
    return corner[0], corner[1]


def choose_anchor(boxes: np.ndarray, power: float, rng: np.random.Generator) -> int:
    if power == 0:
        return int(rng.integers(len(boxes)))
    weights = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) ** power
    return int(rng.choice(len(boxes), p=weights / weights.sum()))


def cell_regions(sample: Sample, image_size: int, offset: Tuple[int, int],
                 window: Optional[int]) -> torch.Tensor:
    """(h, w) index of the smallest of the sample's masks covering each embedding cell's centre in
    the window, -1 where none does (the innermost visible part of a whole/part tree)."""
    scale = image_size / max(sample.image.shape[:2])
    cells = (window or image_size) // PATCH_SIZE
    centres = np.arange(cells) * PATCH_SIZE + PATCH_SIZE / 2
    h, w = sample.image.shape[:2]
    xs = np.floor((centres + offset[0]) / scale).astype(int)
    ys = np.floor((centres + offset[1]) / scale).astype(int)
    inside = (ys[:, None] < h) & (xs[None, :] < w)
    xs, ys = np.minimum(xs, w - 1), np.minimum(ys, h - 1)
    regions = np.full((cells, cells), -1, np.int64)
    if len(sample.masks):
        masks = sample.masks[list(range(len(sample.masks)))][:, ys[:, None], xs[None, :]]
        for k in np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable"):
            regions[masks[k]] = k  # smaller masks painted last
    regions[~inside] = -1
    return torch.from_numpy(regions)


def make_example(sample: Sample, image_size: int, max_masks: int, rng: np.random.Generator,
                 crop: Optional[int] = None, context: Optional[float] = None,
                 anchor_power: float = 0.0, with_regions: bool = False) -> Example:
    """An example of up to `max_masks` of the sample's masks.

    With `crop`, the window holds a randomly chosen anchor mask whole, and the masks are those
    whole inside it. The window's side is `crop`, or with `context` the anchor's longer side times
    `context` (at least `crop`; the whole input when that is larger), so big objects train too.
    The anchor is drawn with probability proportional to its box area to the power `anchor_power`
    (0: uniform over the masks, which are mostly small).
    """
    image, resized_hw = preprocess_image(sample.image, image_size)
    chosen = np.arange(len(sample.masks))
    offset, window = (0, 0), None
    if crop is not None and len(chosen):
        boxes = model_frame_boxes(instance_boxes(sample.masks), image_size / max(sample.image.shape[:2]))
        anchor = boxes[choose_anchor(boxes, anchor_power, rng)]
        side = crop if context is None else window_side(anchor, crop, context, image_size)
        if side < image_size:
            window = side
            offset = choose_window(anchor, image_size, side, rng)
            x, y = offset
            inside = ((boxes[:, 0] >= x) & (boxes[:, 1] >= y)
                      & (boxes[:, 2] <= x + side) & (boxes[:, 3] <= y + side))
            chosen = chosen[inside]
    if len(chosen) > max_masks:
        chosen = np.sort(rng.choice(chosen, max_masks, replace=False))
    masks = sample.masks[chosen]
    full = crop_window(resize_masks(masks, resized_hw, image_size), offset, window)
    low = downsample_masks(full)
    keep = (low.flatten(1).sum(1) > 0).numpy()  # masks that vanish at 1/4 scale cannot be learnt
    regions = cell_regions(sample, image_size, offset, window) if with_regions else None
    return Example(sample.image_id, image, full[keep].bool().numpy(), low[keep], offset, window,
                   regions)


def simulate_interactive(decoder: PromptDecoder, embedding: torch.Tensor, example: Example,
                         num_points: int, rng: np.random.Generator, loss_scale: float,
                         image_pe: Optional[torch.Tensor] = None,
                         first: FirstPrompt = FirstPrompt(),
                         refinements: bool = True) -> Dict[str, float]:
    """Run the paper's interactive simulation for the masks of one image, back-propagating each
    iteration's loss (times loss_scale) as it goes. Returns per-iteration-averaged stats.

    `embedding` and `image_pe` cover the example's window; prompts are sampled in the window and
    given to the decoder in the model input frame, so a window trains exactly what the whole image
    would."""
    device = embedding.device
    gt_low = example.masks_low.to(device)
    m, low = gt_low.shape[0], gt_low.shape[-1]
    scale = example.masks.shape[-1] / low
    gt_low_np = example.masks_low.bool().numpy()
    prompts = PromptSet.initial(example.masks, rng, first)
    offset = np.array(example.offset, np.float32)
    mask_input, has_mask = torch.zeros(m, 1, low, low, device=device), torch.zeros(m, device=device)
    schedule = [True] + iteration_schedule(rng, num_points, refinements)
    totals: Dict[str, float] = {}
    for i, adds_point in enumerate(schedule):
        if i > 0 and adds_point:
            prompts.add_error_points(mask_input[:, 0].cpu().numpy() > 0, gt_low_np, rng, scale)
        iou_pred, logits = decoder(embedding, torch.from_numpy(prompts.coords() + offset).to(device),
                                   torch.from_numpy(prompts.labels()).to(device), mask_input,
                                   has_mask, image_pe)
        multimask = prompts.num_clicks == 0  # a single point or box: ambiguous, use tokens 1..3
        loss, stats = sam_loss(logits, iou_pred, gt_low, multimask)
        if loss.requires_grad:  # not when train_only freezes all that this iteration reaches
            (loss * loss_scale).backward(retain_graph=False)
        mask_input = select_feedback(logits.detach(), iou_pred.detach(), multimask)[:, None]
        has_mask = torch.ones(m, device=device)
        stats["loss"] = float(loss)
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + v / len(schedule)
    return totals


def select_feedback(logits: torch.Tensor, iou_pred: torch.Tensor, multimask: bool) -> torch.Tensor:
    """The logits fed back as next mask prompt: the highest predicted IoU of the 3 multimask outputs
    after a single prompt, else the single-mask output. (M, C, h, w) -> (M, h, w)."""
    if not multimask:
        return logits[:, 0]
    best = iou_pred[:, 1:].argmax(dim=1) + 1
    return logits[torch.arange(len(logits), device=logits.device), best]


# --- embeddings cache (decoder mode) -----------------------------------------------------------

def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class EmbeddingCache:
    """Image embeddings of a frozen encoder on disk (float16 .npy), keyed by encoder weights."""

    def __init__(self, directory: str, encoder: torch.nn.Module) -> None:
        self.dir = os.path.join(directory, encoder_fingerprint(encoder))
        self.encoder = encoder
        os.makedirs(self.dir, exist_ok=True)

    def get(self, image_id: int, image: torch.Tensor) -> torch.Tensor:
        path = os.path.join(self.dir, f"{image_id}.npy")
        if os.path.isfile(path):
            return torch.from_numpy(np.load(path).astype(np.float32))
        with torch.no_grad():
            device = next(self.encoder.parameters()).device
            emb = self.encoder(image[None].to(device))[0].cpu()
        tmp = path + f".tmp{os.getpid()}.npy"
        np.save(tmp, emb.numpy().astype(np.float16))
        os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        return emb.to(torch.float16).float()  # what a later read returns, so runs are reproducible


# --- the loop ----------------------------------------------------------------------------------

@dataclass
class Batch:
    """One step's examples, being made on the loader threads, and the draws that fixed them."""

    futures: List[Future]
    prompt_seed: int  # the step's prompts (first prompts, corrective clicks, schedule)
    rng_before: Dict[str, Any]  # the run's generator and epoch order before this batch was drawn

    def examples(self) -> List[Example]:
        made = [f.result() for f in self.futures]
        return [e for e in made if len(e.masks)]


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decays = sum(step >= f * cfg.steps for f in cfg.lr_decay_at)
    return cfg.lr * 0.1 ** decays


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Weight decay on weight matrices and kernels only: decaying norm scales, biases and position
    embeddings toward zero (as plain AdamW over all parameters does) shrinks what they carry, which
    a model trained from scratch needs to grow (ViT/MAE practice)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith("pos_embed") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def freeze_all_but(model: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Narrow the trainable parameters to those named with one of the prefixes. A prefix that names
    no trainable parameter is refused: a typo, or the frozen encoder of decoder mode, would
    otherwise train nothing, or not what was meant."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    unknown = [pre for pre in prefixes if not any(name.startswith(pre) for name, _ in trainable)]
    if unknown:
        raise ValueError(f"train_only: no trainable parameter is named {unknown} "
                         f"(e.g. {trainable[-1][0]!r})")
    for name, p in trainable:
        p.requires_grad_(any(name.startswith(pre) for pre in prefixes))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN (a debugging aid for reads of
    # uninitialised memory); that cost 8% of a CPU training step (measured 2026-12-02) and
    # changes no result of code that writes before it reads.
    torch.utils.deterministic.fill_uninitialized_memory = False


def build_model(cfg: TrainConfig):
    """(model, its config) from the parent checkpoint if any, else freshly initialised. Asking for
    colour cells adds them to a parent that has none; asking for deeper tiny-encoder stages adds
    blocks to a parent's (a stage is never made shallower)."""
    if cfg.init_checkpoint:
        sam, model_cfg, _ = load_checkpoint(cfg.init_checkpoint, encoder=cfg.init_encoder)
        if cfg.model.tiny.colour_cells and not model_cfg.tiny.colour_cells:
            if cfg.mode == "decoder":  # the new inputs' weights are in the frozen encoder
                raise ValueError("colour cells can only be added in full mode: decoder mode "
                                 "would leave their random weights untrained")
            sam, model_cfg = with_colour_cells(sam, model_cfg)
        depths = tuple(max(d, p) for d, p in zip(cfg.model.tiny.depths, model_cfg.tiny.depths))
        if model_cfg.encoder == "tiny" and depths != tuple(model_cfg.tiny.depths):
            if cfg.mode == "decoder":
                raise ValueError("stages can only be deepened in full mode: decoder mode would "
                                 "leave the new blocks untrained")
            sam, model_cfg = with_deeper_stages(sam, model_cfg, depths)
        return sam, model_cfg
    return build_sam(cfg.model), cfg.model


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.sam, self.model_cfg = build_model(cfg)
        if not cfg.init_checkpoint:
            init_from_scratch(self.sam, cfg.init_embedding_scale)
        self.sam.to(self.device).train()
        self.first_prompt = FirstPrompt(cfg.box_probability, cfg.point_depth)
        self.decoder = PromptDecoder(self.sam)
        self.dataset = CocoInstances(cfg.data_dir, cfg.ann_file, image_ids=cfg.image_ids)
        if len(self.dataset) == 0:
            raise ValueError(f"no image with a usable annotation in {cfg.data_dir}")
        self.encoder_trainable = cfg.mode == "full"
        # The auxiliary loss's projection (trainer-only: not part of the exported model).
        self.region_head = (torch.nn.Conv2d(256, 64, kernel_size=1)
                            if cfg.region_loss_weight > 0 and self.encoder_trainable else None)
        if self.region_head is not None:
            self.region_head.to(self.device)
        if self.encoder_trainable and self.crop_size() and self.model_cfg.encoder != "tiny":
            raise ValueError("crop_size in full mode needs the tiny encoder (a ViT takes whole "
                             "images only); use mode 'decoder' to fine-tune a ViT model on windows")
        for p in self.sam.image_encoder.parameters():
            p.requires_grad_(self.encoder_trainable)
        if cfg.train_only:
            freeze_all_but(self.sam, cfg.train_only)
        if not self.encoder_trainable:
            self.sam.image_encoder.eval()
            cache_dir = cfg.embedding_cache or os.path.join(cfg.out_dir, "embeddings")
            self.cache = EmbeddingCache(cache_dir, self.sam.image_encoder)
        groups = parameter_groups(self.sam, cfg.weight_decay)
        if self.region_head is not None:
            groups += parameter_groups(self.region_head, cfg.weight_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
        self.rng = np.random.default_rng(cfg.seed)
        # Decoding and resizing release the GIL, so threads share the work without copies.
        self.loader = ThreadPoolExecutor(max_workers=cfg.loader_threads,
                                         thread_name_prefix="examples")
        self.step = 0
        self.order: List[int] = []
        self.pending: Optional[Batch] = None  # the next step's batch, drawn ahead
        os.makedirs(cfg.out_dir, exist_ok=True)
        self.checkpoint_path = os.path.join(cfg.out_dir, CHECKPOINT_NAME)
        if cfg.resume and os.path.isfile(self.checkpoint_path):
            self._resume()

    # Batches walk through shuffled epochs so every image is seen equally often.
    def next_image_ids(self) -> List[int]:
        ids = []
        while len(ids) < self.cfg.batch_size:
            if not self.order:
                self.order = list(self.rng.permutation(self.dataset.image_ids))
            ids.append(int(self.order.pop()))
        return ids

    def embeddings(self, examples: List[Example]) -> List[torch.Tensor]:
        """Each example's (1, 256, h, w) embedding of its window."""
        if not self.encoder_trainable:
            # A frozen encoder's window of the whole image's embedding is exactly what inference sees.
            return [e.window(self.cache.get(e.image_id, e.image), PATCH_SIZE)[None].to(self.device)
                    for e in examples]
        if all(e.crop is None for e in examples):
            images = torch.stack([e.image for e in examples]).to(self.device)
            return list(self.sam.image_encoder(images).split(1))
        # Windows differ in size: one encoder pass each, at the window's place in the image.
        return [self.sam.image_encoder(e.window(e.image)[None].to(self.device),
                                       [(e.offset[0] // PATCH_SIZE, e.offset[1] // PATCH_SIZE)])
                for e in examples]

    def crop_size(self) -> Optional[int]:
        crop = self.cfg.crop_size
        return crop if crop is not None and crop < self.model_cfg.image_size else None

    def make(self, image_id: int, seed: int) -> Example:
        return make_example(self.dataset.load(image_id), self.model_cfg.image_size,
                            self.cfg.masks_per_image, np.random.default_rng(seed),
                            self.crop_size(), self.cfg.crop_context, self.cfg.anchor_power,
                            with_regions=self.region_head is not None)

    def draw_batch(self) -> Batch:
        """Draw the next batch's images and seeds from the run's generator (the only draws made
        from it) and start making its examples on the loader threads."""
        before = {"numpy": self.rng.bit_generator.state, "order": list(self.order)}
        ids = self.next_image_ids()
        seeds = self.rng.integers(2 ** 63, size=len(ids) + 1)  # one per example, one for prompts
        return Batch([self.loader.submit(self.make, i, int(s)) for i, s in zip(ids, seeds)],
                     int(seeds[-1]), before)

    def sample_examples(self) -> List[Example]:
        return self.draw_batch().examples()

    def forward_backward(self, examples: List[Example], rng: np.random.Generator) -> Dict[str, float]:
        """Zero the gradients, then accumulate those of the mean loss over examples x iterations."""
        self.optimizer.zero_grad(set_to_none=True)
        embs = self.embeddings(examples)
        leaves = [e.detach().requires_grad_(self.encoder_trainable) for e in embs]
        n_iters = 1 + self.cfg.num_points + (2 if self.cfg.refinements else 0)
        dense_pe = self.sam.prompt_encoder.get_dense_pe()
        totals: Dict[str, float] = {}
        for b, example in enumerate(examples):
            stats = simulate_interactive(self.decoder, leaves[b], example, self.cfg.num_points,
                                         rng, loss_scale=1.0 / (len(examples) * n_iters),
                                         image_pe=example.window(dense_pe, PATCH_SIZE),
                                         first=self.first_prompt,
                                         refinements=self.cfg.refinements)
            for k, v in stats.items():
                totals[k] = totals.get(k, 0.0) + v / len(examples)
        if self.encoder_trainable:
            # The decoder's gradient at each embedding, plus the auxiliary loss's, through the encoder.
            passed = sum((e * leaf.grad).sum() for e, leaf in zip(embs, leaves))
            if self.region_head is not None:
                region = self.region_loss(embs, examples)
                totals["region_loss"] = float(region)
                passed = passed + self.cfg.region_loss_weight * region
            passed.backward()
        return totals

    def region_loss(self, embs: List[torch.Tensor], examples: List[Example]) -> torch.Tensor:
        losses = [region_contrast_loss(self.region_head(e)[0].flatten(1).T,
                                       ex.regions.flatten().to(self.device))
                  for e, ex in zip(embs, examples)]
        return torch.stack(losses).mean()

    def optimizer_step(self) -> Dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        self.optimizer.step()
        self.step += 1
        return {"grad_norm": grad_norm, "lr": self.optimizer.param_groups[0]["lr"]}

    def train_step(self) -> Dict[str, float]:
        batch, self.pending = self.pending or self.draw_batch(), None
        examples = batch.examples()
        for _ in range(10):  # a batch whose masks all vanish at 1/4 scale: draw another
            if examples:
                break
            batch = self.draw_batch()
            examples = batch.examples()
        else:
            raise ValueError("ten batches in a row had no mask visible at the decoder's resolution")
        if self.step + 1 < self.cfg.steps:
            self.pending = self.draw_batch()  # made while this step computes
        stats = self.forward_backward(examples, np.random.default_rng(batch.prompt_seed))
        stats.update(self.optimizer_step())
        return stats

    def run(self, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelFn] = None) -> Dict[str, Any]:
        cfg, start = self.cfg, time.time()
        stats: Dict[str, float] = {}
        stopped = "steps"
        while self.step < cfg.steps:
            if cancel is not None and cancel():
                self.save()
                raise TrainingCancelled(f"cancelled at step {self.step}/{cfg.steps}")
            t0 = time.time()
            stats = self.train_step()
            stats.update(step=self.step, steps=cfg.steps, seconds=time.time() - t0)
            out_of_time = cfg.max_seconds is not None and time.time() - start >= cfg.max_seconds
            last = self.step == cfg.steps or out_of_time  # always logged and checkpointed
            if self.step % cfg.log_every == 0 or last:
                self._log(stats)
            stats["checkpointed"] = self.step % cfg.checkpoint_every == 0 or last
            if stats["checkpointed"]:
                self.save()  # before progress(), which may copy it elsewhere
            if progress is not None:
                progress(stats)
            if out_of_time and self.step < cfg.steps:
                stopped = "max_seconds"
                break
        return {"checkpoint": self.checkpoint_path, "steps": self.step, "final": stats,
                "seconds": time.time() - start, "stopped": stopped}

    # --- persistence ---------------------------------------------------------------------------

    def lineage(self) -> Dict[str, Any]:
        return {"parent": self.cfg.init_checkpoint, "mode": self.cfg.mode,
                "training_data": {"dir": self.cfg.data_dir, "ann_file": self.dataset.ann_file,
                                  "images": len(self.dataset)},
                "steps": self.step, "seed": self.cfg.seed}

    def save(self) -> None:
        tmp = self.checkpoint_path + ".tmp"
        save_checkpoint(tmp, self.sam, self.model_cfg, step=self.step,
                        optimizer=self.optimizer.state_dict(), train_config=self.cfg.to_dict(),
                        lineage_info=self.lineage(),
                        rng={**self.rng_state(), "torch": torch.get_rng_state()},
                        region_head=None if self.region_head is None else self.region_head.state_dict())
        os.replace(tmp, self.checkpoint_path)

    def rng_state(self) -> Dict[str, Any]:
        """The run's generator and epoch order as of the last finished step: a batch drawn ahead
        is not part of it, so a resumed run draws that batch again."""
        if self.pending is not None:
            return self.pending.rng_before
        return {"numpy": self.rng.bit_generator.state, "order": list(self.order)}

    def _resume(self) -> None:
        ckpt = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.sam.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step = ckpt["step"]
        self.rng.bit_generator.state = ckpt["rng"]["numpy"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.order = list(ckpt["rng"]["order"])
        if self.region_head is not None and ckpt.get("region_head") is not None:
            self.region_head.load_state_dict(ckpt["region_head"])

    def _log(self, stats: Dict[str, float]) -> None:
        with open(os.path.join(self.cfg.out_dir, LOG_NAME), "a") as f:
            f.write(json.dumps(stats) + "\n")


def train(cfg: TrainConfig, progress: Optional[ProgressFn] = None,
          cancel: Optional[CancelFn] = None) -> Dict[str, Any]:
    """Train and return {"checkpoint", "steps", "final" (last step's stats), "seconds",
    "stopped" ("steps", or "max_seconds" when the time budget ended the run first)}."""
    return Trainer(cfg).run(progress, cancel)
