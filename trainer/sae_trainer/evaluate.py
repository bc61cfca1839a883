"""Held-out evaluation with a simulated annotator (the interactive-segmentation protocol of RITM,
used by the SAM paper's point-prompt evaluation):

* 1-click mIoU: one foreground click at the mask's interior-most point (the maximum of its distance
  transform, image borders counting as boundary); the best of the 3 multimask outputs by predicted IoU.
* NoC@90 (and @85): clicks until IoU >= 0.90, at most 20 (a mask that never gets there counts 20).
  Each next click goes to the interior-most point of the largest error region, comparing false
  negatives with false positives by the depth of their interior (RITM's "largest error region");
  it is foreground if it fixes a false negative, else background. From the second click on, the
  single-mask output is used and the previous low-res logits are fed back as mask prompt.

An optional ignore mask (e.g. COCO crowd regions) removes pixels from the IoU and from click placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import cv2
import numpy as np
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from .data import CocoInstances

MAX_CLICKS = 20


def iou(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """IoU of two (H, W) boolean masks over the pixels not ignored; 1 when both are empty."""
    if ignore is not None:
        pred, gt = pred & ~ignore, gt & ~ignore
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


def interior_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest non-region pixel or image border."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _deepest(dist: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


def first_click(gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> tuple[int, int]:
    """(x, y) of the point farthest from the mask's boundary."""
    region = gt if ignore is None else gt & ~ignore
    return _deepest(interior_distance(region if region.any() else gt))


def next_click(pred: np.ndarray, gt: np.ndarray,
               ignore: Optional[np.ndarray] = None) -> Optional[tuple[tuple[int, int], bool]]:
    """((x, y), is_foreground) of the corrective click, or None when nothing is wrong."""
    valid = np.ones_like(gt) if ignore is None else ~ignore
    fn_dist = interior_distance(gt & ~pred & valid)
    fp_dist = interior_distance(pred & ~gt & valid)
    fn_max, fp_max = fn_dist.max(), fp_dist.max()
    if fn_max == 0 and fp_max == 0:
        return None
    positive = fn_max >= fp_max
    return _deepest(fn_dist if positive else fp_dist), bool(positive)


@dataclass
class MaskResult:
    ious: List[float] = field(default_factory=list)  # IoU after click 1, 2, ...

    def clicks_to(self, threshold: float, max_clicks: int = MAX_CLICKS) -> int:
        for k, value in enumerate(self.ious, start=1):
            if value >= threshold:
                return k
        return max_clicks


def evaluate_mask(predictor: SamPredictor, gt: np.ndarray, ignore: Optional[np.ndarray] = None,
                  max_clicks: int = MAX_CLICKS, stop_iou: float = 0.9) -> MaskResult:
    """Simulated clicks on one object of the image set in `predictor`, until IoU >= stop_iou."""
    result = MaskResult()
    points, labels = [first_click(gt, ignore)], [1]
    masks, scores, logits = predictor.predict(np.array(points, np.float32), np.array(labels),
                                              multimask_output=True)
    best = int(np.argmax(scores))
    pred, low_res = masks[best], logits[best]
    result.ious.append(iou(pred, gt, ignore))
    while result.ious[-1] < stop_iou and len(result.ious) < max_clicks:
        click = next_click(pred, gt, ignore)
        if click is None:
            break
        points.append(click[0])
        labels.append(1 if click[1] else 0)
        masks, _, logits = predictor.predict(np.array(points, np.float32), np.array(labels),
                                             mask_input=low_res[None], multimask_output=False)
        pred, low_res = masks[0], logits[0]
        result.ious.append(iou(pred, gt, ignore))
    return result


def summarize(results: List[MaskResult], images: int, max_clicks: int = MAX_CLICKS) -> Dict[str, Any]:
    if not results:
        return {"images": images, "masks": 0}
    return {
        "images": images,
        "masks": len(results),
        "miou_1click": float(np.mean([r.ious[0] for r in results])),
        "noc85": float(np.mean([r.clicks_to(0.85, max_clicks) for r in results])),
        "noc90": float(np.mean([r.clicks_to(0.90, max_clicks) for r in results])),
        "max_clicks": max_clicks,
        "protocol": "RITM clicks; 1st click: deepest mask point, best of 3 by predicted IoU",
    }


def evaluate(sam: Sam, dataset: CocoInstances, max_images: Optional[int] = None,
             max_masks_per_image: Optional[int] = None, max_clicks: int = MAX_CLICKS,
             use_ignore: bool = True, progress: Optional[Callable[[int, int], None]] = None,
             cancel: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """1-click mIoU and NoC@85/90 over the dataset's images (all masks, or the first N per image)."""
    sam.eval()
    predictor = SamPredictor(sam)
    image_ids = dataset.image_ids[:max_images] if max_images else dataset.image_ids
    results: List[MaskResult] = []
    for n, image_id in enumerate(image_ids, start=1):
        if cancel is not None and cancel():
            raise InterruptedError(f"evaluation cancelled after {n - 1} images")
        sample = dataset.load(image_id)
        predictor.set_image(sample.image)
        ignore = sample.ignore if use_ignore else None
        for gt in sample.masks[:max_masks_per_image]:
            results.append(evaluate_mask(predictor, gt, ignore, max_clicks))
        if progress is not None:
            progress(n, len(image_ids))
    return summarize(results, len(image_ids), max_clicks)
