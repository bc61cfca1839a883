"""What a training run is told: `TrainConfig` (data, model, schedule, prompts) and the names of
what it writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .model import PATCH_SIZE, ModelConfig


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
