"""Simulated interactive prompts for training (paper §3 "Training algorithm").

Prompts use the ONNX decoder's encoding (sam-spec §2a): a set of points (x, y) in the model's input
frame with labels 1 = foreground, 0 = background, 2/3 = box corners, -1 = padding.

* The first prompt is, with equal probability, a foreground point sampled uniformly from the mask,
  or the mask's bounding box with noise on each coordinate (std = 10% of the box side, at most 20 px).
  Both choices are parameters (`FirstPrompt`): training a model from scratch on a small budget goes
  much faster with points from the mask's interior first (see train_config.py, point_depth).
  A point prompt gets a padding point (as PromptEncoder adds when there is no box), so both kinds are
  2 tokens and masks of one image can be decoded as one batch.
* Later points are sampled uniformly from the error region between the previous prediction and the
  ground truth: foreground from false negatives, background from false positives.
* 11 decoder iterations per mask: the first prompt, 8 iterations that each add a point, and 2 that add
  none (one at a random place among the 8, one at the end), each fed the previous unthresholded
  low-res logits as mask prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import cv2
import numpy as np

BOX_NOISE_FRACTION = 0.1
BOX_NOISE_MAX_PX = 20.0

LABEL_PAD, LABEL_BG, LABEL_FG, LABEL_BOX_TL, LABEL_BOX_BR = -1, 0, 1, 2, 3


def sample_point_in_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pixel (x, y) drawn uniformly from the True pixels of a (H, W) mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("cannot sample a point from an empty mask")
    i = rng.integers(len(xs))
    return np.array([xs[i], ys[i]], dtype=np.float32)


def interior_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest non-region pixel or image border."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def sample_interior_point(mask: np.ndarray, rng: np.random.Generator, depth: float) -> np.ndarray:
    """A pixel (x, y) drawn uniformly from the part of the mask at least `depth` times as far from
    its boundary as its deepest pixel (depth 0: the whole mask)."""
    dist = interior_distance(mask)
    return sample_point_in_mask(dist >= depth * dist.max(), rng) if depth > 0 else \
        sample_point_in_mask(mask, rng)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box of a (H, W) mask, corners on pixel indices (as segment_anything's AMG)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("cannot box an empty mask")
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def noisy_box(box: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Jitter each coordinate with std = 10% of the box side along its axis, capped at 20 px."""
    w, h = box[2] - box[0], box[3] - box[1]
    std = np.minimum(BOX_NOISE_FRACTION * np.array([w, h, w, h]), BOX_NOISE_MAX_PX)
    noisy = np.clip(box + rng.normal(size=4) * std, 0, size - 1)
    # Keep it a valid XYXY box if the noise swapped two sides.
    x0, x1 = sorted(noisy[[0, 2]])
    y0, y1 = sorted(noisy[[1, 3]])
    return np.array([x0, y0, x1, y1], dtype=np.float32)


@dataclass(frozen=True)
class FirstPrompt:
    """How first prompts are drawn. The defaults are the paper's."""

    box_probability: float = 0.5  # else a foreground point
    point_depth: float = 0.0  # 0: uniform over the mask; d: from its part >= d x the deepest depth


PAPER_FIRST_PROMPT = FirstPrompt()


def first_prompt(mask: np.ndarray, rng: np.random.Generator,
                 how: FirstPrompt = PAPER_FIRST_PROMPT) -> tuple[np.ndarray, np.ndarray]:
    """(coords (2, 2), labels (2,)): a fg point + padding, or a noisy box."""
    if rng.random() < 1 - how.box_probability:
        point = sample_interior_point(mask, rng, how.point_depth)
        coords = np.stack([point, np.zeros(2, np.float32)])
        labels = np.array([LABEL_FG, LABEL_PAD], dtype=np.float32)
    else:
        box = noisy_box(mask_to_box(mask), rng, size=max(mask.shape))
        coords = box.reshape(2, 2)
        labels = np.array([LABEL_BOX_TL, LABEL_BOX_BR], dtype=np.float32)
    return coords, labels


def error_point(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A corrective click drawn uniformly from the error region of (H, W) boolean masks.

    Returns ((x, y) pixel, label): 1 if it fell in a false negative, 0 if in a false positive.
    With no error left, a foreground point inside the mask (a harmless confirming click).
    """
    false_neg = gt & ~pred
    error = false_neg | (pred & ~gt)
    if not error.any():
        return sample_point_in_mask(gt, rng), float(LABEL_FG)
    point = sample_point_in_mask(error, rng)
    x, y = int(point[0]), int(point[1])
    return point, float(LABEL_FG if false_neg[y, x] else LABEL_BG)


def iteration_schedule(rng: np.random.Generator, num_points: int = 8,
                       refinements: bool = True) -> List[bool]:
    """Whether each iteration after the first adds a point: `num_points` True, plus two False, one at
    a random gap among the points and one at the end (11 iterations in all by default). Without
    `refinements`, only the points (a cheaper schedule for the first steps of a CPU run)."""
    schedule = [True] * num_points
    if refinements:
        schedule.insert(int(rng.integers(num_points + 1)), False)
        schedule.append(False)
    return schedule


@dataclass
class PromptSet:
    """The prompts of M masks decoded together: M prompts of the same number of tokens.

    clicks (M, K, 2) / click_labels (M, K) are the corrective points added so far; first (M, 2, 2) /
    first_labels (M, 2) the initial point+padding or box corners, kept last as the ONNX contract
    orders them (points, then box corners or the padding point).
    """

    first: np.ndarray
    first_labels: np.ndarray
    clicks: np.ndarray
    click_labels: np.ndarray

    @classmethod
    def initial(cls, masks: np.ndarray, rng: np.random.Generator,
                how: FirstPrompt = PAPER_FIRST_PROMPT) -> "PromptSet":
        prompts = [first_prompt(m, rng, how) for m in masks]
        first = np.stack([c for c, _ in prompts])
        first_labels = np.stack([lab for _, lab in prompts])
        m = len(masks)
        return cls(first, first_labels, np.zeros((m, 0, 2), np.float32), np.zeros((m, 0), np.float32))

    @property
    def num_clicks(self) -> int:
        return self.clicks.shape[1]

    def add_error_points(self, preds: np.ndarray, gts: np.ndarray, rng: np.random.Generator,
                         scale: float = 1.0) -> None:
        """Add one corrective click per mask from (M, h, w) boolean maps.

        `scale` maps a pixel of those maps to the prompt frame (maps at 1/4 of the model input give
        scale 4); the click lands on the centre of that pixel.
        """
        points, labels = zip(*(error_point(p, g, rng) for p, g in zip(preds, gts)))
        points = (np.stack(points) + 0.5) * scale - 0.5
        self.clicks = np.concatenate([self.clicks, points[:, None, :].astype(np.float32)], axis=1)
        self.click_labels = np.concatenate(
            [self.click_labels, np.array(labels, np.float32)[:, None]], axis=1)

    def coords(self) -> np.ndarray:
        return np.concatenate([self.clicks, self.first], axis=1)

    def labels(self) -> np.ndarray:
        return np.concatenate([self.click_labels, self.first_labels], axis=1)
