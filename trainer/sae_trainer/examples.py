"""One training example: an image in the model frame, its sampled masks, and the training window
(a square of the input around the masks, aligned to the embedding grid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .data import Sample, downsample_masks, instance_boxes, preprocess_image, resize_masks
from .model import PATCH_SIZE


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
