"""Training loop: SAM's simulated interactive segmentation (paper §3) on a COCO-instance folder.

Two modes:
* `full`: image encoder + prompt encoder + mask decoder, images encoded every step.
* `decoder`: the image encoder is frozen and its embeddings cached once on disk; only the prompt
  encoder and mask decoder train (the fast retraining path of the data engine).

Memory stays bounded however many masks and iterations a step has: each decoder iteration is
back-propagated on its own into a detached copy of the image embeddings, whose accumulated gradient
is then pushed through the encoder once. This gives exactly the gradient of the summed loss.

The parts: train_config.py (what a run is told), examples.py (an image and its masks in a training
window), click_simulation.py (the paper's interactive simulation), embedding_cache.py (decoder mode);
this module is the loop that feeds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.utils.deterministic

from .click_simulation import simulate_interactive
from .data import CocoInstances
from .embedding_cache import EmbeddingCache
from .examples import Example, make_example
from .losses import region_contrast_loss
from .model import (PATCH_SIZE, PromptDecoder, build_sam, init_from_scratch, load_checkpoint,
                    resolve_device, save_checkpoint, with_colour_cells, with_deeper_stages)
from .prompts import FirstPrompt
from .train_config import (CHECKPOINT_NAME, LOG_NAME, CancelFn, ProgressFn, TrainConfig,
                           TrainingCancelled)


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
                # Python ints: the checkpoint must load with weights_only (no numpy scalars).
                self.order = [int(i) for i in self.rng.permutation(self.dataset.image_ids)]
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
                        data_sha256=self.data_sha256(),
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

    def data_sha256(self) -> str:
        with open(self.dataset.ann_file, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def _resume(self) -> None:
        # weights_only: a checkpoint from storage is data, never code to run.
        ckpt = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        ours, theirs = training_identity(self.cfg.to_dict()), training_identity(ckpt.get("train_config", {}))
        if ours != theirs or ckpt.get("data_sha256") != self.data_sha256():
            changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            what = f"settings {', '.join(changed)}" if changed else "training data (annotations)"
            raise ValueError(f"{self.checkpoint_path} belongs to another training (its {what} differ): "
                             "resume only the same training, or start in another out_dir")
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


# Where a run writes and how it is run, not what it trains: a resume may change these.
RUN_LOCAL_FIELDS = {"data_dir", "out_dir", "ann_file", "init_checkpoint", "init_encoder",
                    "embedding_cache", "resume", "device", "max_seconds", "loader_threads",
                    "checkpoint_every", "log_every"}


def training_identity(config: Dict[str, Any]) -> Dict[str, Any]:
    """The settings that make two trainings the same one (tuples and lists compare equal)."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in RUN_LOCAL_FIELDS}))


def train(cfg: TrainConfig, progress: Optional[ProgressFn] = None,
          cancel: Optional[CancelFn] = None) -> Dict[str, Any]:
    """Train and return {"checkpoint", "steps", "final" (last step's stats), "seconds",
    "stopped" ("steps", or "max_seconds" when the time budget ended the run first)}."""
    return Trainer(cfg).run(progress, cancel)
