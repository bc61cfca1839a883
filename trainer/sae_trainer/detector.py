"""The class-agnostic "object" box detector of stage 2 (paper §4): boxes of things worth a mask,
one generic class.

The paper used a Faster R-CNN on the image. sa-engine's reference detector is a small
CenterNet-style head ("Objects as Points", Zhou et al. 2019) on SAM's image embedding instead:
stage 2 computes that embedding for the decoder anyway, so detection costs a few convolutions more,
and the head trains on a CPU from cached embeddings in minutes. Per embedding cell (stride 16 of
the 1024 frame) it predicts
* the chance that an object's centre falls in the cell (a heatmap, focal loss on Gaussian peaks),
* the object's size (log of width and height in cells), and
* where in the cell the centre lies (an offset in [0, 1]).
A detection is a local maximum of the heatmap. What it cannot do: two objects whose centres share a
cell (a whole and its centred part) give one box; objects under a cell or so in size are rough.

The exported graph (`ExportedDetector`) turns the three maps into `scores` (B,1,G,G) and `boxes`
(B,4,G,G, x0 y0 x1 y1 in the model frame); the peak picking, threshold, scaling back to the image
and NMS are plain code on either side (`decode` here, lib/detector/decode.ts in TypeScript).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from .model import PATCH_SIZE

ARCH = "centernet-on-sam-embedding"


@dataclass
class DetectorConfig:
    embed_dim: int = 256  # SAM's embedding channels
    width: int = 64
    # One 3x3 conv per entry, with this dilation: (1, 2, 4) sees 15 cells (240 px of the 1024 frame)
    # around a centre for a few convolutions' cost, as large objects need.
    dilations: Tuple[int, ...] = (1, 2, 4)
    prior: float = 0.01  # initial heatmap probability (focal-loss practice: stable first steps)

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "DetectorConfig":
        return DetectorConfig(**d)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class BoxHead(nn.Module):
    """Embedding (B, C, G, G) -> centre logits (B,1,G,G), log size (B,2,G,G), offset logits (B,2,G,G)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        # A 1x1 projection first: the 3x3 convs then run at `width` channels, not the embedding's.
        layers: List[nn.Module] = [nn.Conv2d(cfg.embed_dim, cfg.width, 1), nn.GroupNorm(8, cfg.width),
                                   nn.GELU()]
        for d in cfg.dilations:
            layers += [nn.Conv2d(cfg.width, cfg.width, 3, padding=d, dilation=d),
                       nn.GroupNorm(8, cfg.width), nn.GELU()]
        self.trunk = nn.Sequential(*layers)
        self.centre = nn.Conv2d(cfg.width, 1, 1)
        self.size = nn.Conv2d(cfg.width, 2, 1)
        self.offset = nn.Conv2d(cfg.width, 2, 1)
        nn.init.constant_(self.centre.bias, -math.log((1 - cfg.prior) / cfg.prior))

    def forward(self, embedding: torch.Tensor):
        x = self.trunk(embedding)
        return self.centre(x), self.size(x), self.offset(x)


class ExportedDetector(nn.Module):
    """What detector.onnx holds: `scores` (B,1,G,G) in [0,1] and `boxes` (B,4,G,G) in the model frame."""

    def __init__(self, head: BoxHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, image_embeddings: torch.Tensor):
        centre, size, offset = self.head(image_embeddings)
        return torch.sigmoid(centre), boxes_from_maps(size, offset)


def boxes_from_maps(size: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(B,2,G,G) log sizes and offset logits -> (B,4,G,G) x0 y0 x1 y1 in pixels of the model frame."""
    g = size.shape[-1]
    cells = torch.arange(g, dtype=size.dtype, device=size.device)
    cx = (cells.view(1, 1, g) + torch.sigmoid(offset[:, 0])) * PATCH_SIZE
    cy = (cells.view(1, g, 1) + torch.sigmoid(offset[:, 1])) * PATCH_SIZE
    half_w = torch.exp(size[:, 0].clamp(max=8.0)) * PATCH_SIZE / 2
    half_h = torch.exp(size[:, 1].clamp(max=8.0)) * PATCH_SIZE / 2
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


# --- training targets --------------------------------------------------------------------------

def gaussian_radius(width: float, height: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in cells) within which a shifted box of the same size still overlaps the
    true one by min_overlap (the smallest of its three cases)."""
    a1, b1 = 1, width + height
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2 = 4, 2 * (width + height)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (width + height)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


@dataclass
class Targets:
    heatmap: torch.Tensor  # (1, G, G) in [0, 1]: 1 at each object's centre cell
    size: torch.Tensor  # (2, G, G) log(w / stride), log(h / stride) at centre cells
    offset: torch.Tensor  # (2, G, G) centre position within its cell, in [0, 1)
    centres: torch.Tensor  # (G, G) bool: the cells that carry a size and an offset


def make_targets(boxes: np.ndarray, grid: int) -> Targets:
    """Targets of (N, 4) x0 y0 x1 y1 boxes (exclusive ends) in pixels of the model frame. Where two
    centres share a cell the smaller box's size is kept: a large box is found from many cells."""
    heatmap = np.zeros((grid, grid), np.float32)
    size = np.zeros((2, grid, grid), np.float32)
    offset = np.zeros((2, grid, grid), np.float32)
    centres = np.zeros((grid, grid), bool)
    ys, xs = np.mgrid[:grid, :grid]
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) if len(boxes) else []
    for x0, y0, x1, y1 in boxes[order]:
        w, h = (x1 - x0) / PATCH_SIZE, (y1 - y0) / PATCH_SIZE
        if w <= 0 or h <= 0:
            continue
        cx, cy = (x0 + x1) / 2 / PATCH_SIZE, (y0 + y1) / 2 / PATCH_SIZE
        i, j = min(int(cy), grid - 1), min(int(cx), grid - 1)
        sigma = (2 * max(0.0, gaussian_radius(h, w)) + 1) / 6
        peak = np.exp(-((xs - j) ** 2 + (ys - i) ** 2) / (2 * sigma ** 2))
        np.maximum(heatmap, peak.astype(np.float32), out=heatmap)
        heatmap[i, j] = 1.0
        size[:, i, j] = (math.log(w), math.log(h))
        offset[:, i, j] = (cx - j, cy - i)
        centres[i, j] = True
    return Targets(torch.from_numpy(heatmap)[None], torch.from_numpy(size),
                   torch.from_numpy(offset).clamp(0, 1 - 1e-4), torch.from_numpy(centres))


def stack_targets(targets: List[Targets]) -> Targets:
    return Targets(*(torch.stack([getattr(t, f) for t in targets])
                     for f in ("heatmap", "size", "offset", "centres")))


def detector_loss(outputs, targets: Targets, alpha: float = 2.0, beta: float = 4.0) -> Dict[str, torch.Tensor]:
    """CenterNet's losses: penalty-reduced focal loss on the heatmap, L1 on log size and offset at
    centre cells, each normalised by the number of objects."""
    centre, size, offset = outputs
    p = torch.sigmoid(centre).clamp(1e-4, 1 - 1e-4)
    gt = targets.heatmap
    positive = gt.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** alpha * positive).sum()
    neg_loss = -(torch.log(1 - p) * p ** alpha * (1 - gt) ** beta * (1 - positive)).sum()
    n = positive.sum().clamp(min=1.0)
    cells = targets.centres[:, None].expand_as(size)
    size_loss = F.l1_loss(size[cells], targets.size[cells], reduction="sum") / n
    offset_loss = F.l1_loss(torch.sigmoid(offset)[cells], targets.offset[cells], reduction="sum") / n
    heat = (pos_loss + neg_loss) / n
    return {"loss": heat + 0.1 * size_loss + offset_loss, "heatmap": heat, "size": size_loss,
            "offset": offset_loss}


# --- detections --------------------------------------------------------------------------------

@dataclass
class DecodeSettings:
    score_threshold: float = 0.1
    nms_iou: float = 0.5
    max_detections: int = 100


def decode(scores: torch.Tensor, boxes: torch.Tensor, scale: float, image_hw: tuple[int, int],
           settings: DecodeSettings) -> tuple[np.ndarray, np.ndarray]:
    """One image's detections from the exported maps: (K, 4) x0 y0 x1 y1 in original pixels and
    (K,) scores, best first. Peaks are cells no lower than their 8 neighbours; boxes are scaled by
    1/scale (the resize to the model frame), clipped to the image, dropped when under a pixel wide
    or high, then NMS. lib/detector/decode.ts is the same procedure."""
    s = scores[0, 0]
    peaks = s.eq(F.max_pool2d(s[None, None], 3, stride=1, padding=1)[0, 0]) & (s >= settings.score_threshold)
    index = torch.nonzero(peaks.flatten()).flatten()
    if len(index) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    values = s.flatten()[index]
    order = torch.argsort(values, descending=True, stable=True)[: 4 * settings.max_detections]
    index, values = index[order], values[order]
    flat = boxes[0].reshape(4, -1)[:, index].T / scale
    h, w = image_hw
    flat[:, 0::2] = flat[:, 0::2].clamp(0, w)
    flat[:, 1::2] = flat[:, 1::2].clamp(0, h)
    ok = ((flat[:, 2] - flat[:, 0]) >= 1) & ((flat[:, 3] - flat[:, 1]) >= 1)
    flat, values = flat[ok], values[ok]
    keep = nms(flat, values, settings.nms_iou)[: settings.max_detections]
    return flat[keep].numpy(), values[keep].numpy()
