"""Held-out evaluation with a simulated annotator (the interactive-segmentation protocol of RITM,
used by the SAM paper's point-prompt evaluation):

* 1-click mIoU: one foreground click at the mask's interior-most point (the maximum of its distance
  transform, image borders counting as boundary); the best of the 3 multimask outputs by predicted IoU.
  Also reported: the "oracle" 1-click mIoU (the best of the 3 by true IoU, as the SAM paper's
  ambiguity-aware figure) and both by object size (COCO's small < 32², medium < 96², large).
* NoC@90 (and @85): clicks until IoU >= 0.90, at most 20 (a mask that never gets there counts 20).
  Each next click goes to the interior-most point of the largest error region, comparing false
  negatives with false positives by the depth of their interior (RITM's "largest error region");
  it is foreground if it fixes a false negative, else background. From the second click on, the
  single-mask output is used and the previous low-res logits are fed back as mask prompt.
* mIoU after 1, 2, 3, 5, 10 and 20 clicks (`miou_at_clicks`): whether more clicks help. Clicking
  stops at IoU 0.9 or when nothing is wrong, and such a mask keeps its last IoU.
* Two reference figures, to tell segmenting from painting a blob at the click: `miou_1click_disk`,
  a disk of the mask's own area centred on the first click (position and true size alone, no
  model), and `miou_1click_blank`, the model given the same first click on a uniform grey image of
  the same size (what it gets without looking). A model that segments what it sees beats both.
* How well the IoU head predicts (`iou_head`): each of the 3 first-click masks' predicted IoU
  against its true IoU — their Pearson correlation, mean absolute error, and a reliability table
  (mean true IoU per tenth of predicted IoU). The AMG filters masks by this prediction, so a head
  that does not track true IoU makes stage 3 keep the wrong masks (SAM paper §3, "IoU prediction").

An optional ignore mask (e.g. COCO crowd regions) removes pixels from the IoU and from click placement.
When only some masks of an image are evaluated, they are a seeded random choice (annotation order
often follows paint order, so the first masks would be the biggest objects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from .data import CocoInstances
from .prompts import interior_distance

MAX_CLICKS = 20
CURVE_CLICKS = (1, 2, 3, 5, 10, 20)
SIZE_BUCKETS = (("small", 32 ** 2), ("medium", 96 ** 2), ("large", float("inf")))


def iou(pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
    """IoU of two (H, W) boolean masks over the pixels not ignored; 1 when both are empty."""
    if ignore is not None:
        pred, gt = pred & ~ignore, gt & ~ignore
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / union


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
    oracle_iou: Optional[float] = None  # after click 1, the best of the 3 masks by true IoU
    area: int = 0  # mask pixels in the original image
    first_click: Optional[tuple[int, int]] = None  # (x, y)
    disk_iou: Optional[float] = None  # a disk of the mask's area at the first click
    blank_iou: Optional[float] = None  # the first click on a uniform grey image
    # The 3 first-click masks, best predicted first: (predicted IoU, true IoU) of each.
    first_click_pairs: List[tuple[float, float]] = field(default_factory=list)

    def iou_after(self, clicks: int) -> float:
        return self.ious[min(clicks, len(self.ious)) - 1]

    def clicks_to(self, threshold: float, max_clicks: int = MAX_CLICKS) -> int:
        for k, value in enumerate(self.ious, start=1):
            if value >= threshold:
                return k
        return max_clicks


def disk(shape: tuple[int, ...], centre: tuple[int, int], area: int) -> np.ndarray:
    """(H, W) boolean disk of about `area` pixels centred on (x, y)."""
    ys, xs = np.ogrid[:shape[0], :shape[1]]
    return (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= area / np.pi


def predict_one_click(predictor: SamPredictor, click: tuple[int, int]):
    """The 3 multimask outputs for one foreground click: (masks, scores, logits), best first."""
    masks, scores, logits = predictor.predict(np.array([click], np.float32), np.array([1]),
                                              multimask_output=True)
    order = np.argsort(-scores, kind="stable")
    return masks[order], scores[order], logits[order]


def evaluate_mask(predictor: SamPredictor, gt: np.ndarray, ignore: Optional[np.ndarray] = None,
                  max_clicks: int = MAX_CLICKS, stop_iou: float = 0.9) -> MaskResult:
    """Simulated clicks on one object of the image set in `predictor`, until IoU >= stop_iou."""
    result = MaskResult(area=int(np.count_nonzero(gt)))
    points, labels = [first_click(gt, ignore)], [1]
    masks, scores, logits = predict_one_click(predictor, points[0])
    pred, low_res = masks[0], logits[0]
    result.first_click_pairs = [(float(s), iou(m, gt, ignore)) for m, s in zip(masks, scores)]
    result.ious.append(result.first_click_pairs[0][1])
    result.oracle_iou = max(true for _, true in result.first_click_pairs)
    result.first_click = points[0]
    result.disk_iou = iou(disk(gt.shape, points[0], result.area), gt, ignore)
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


def size_bucket(area: int) -> str:
    return next(name for name, limit in SIZE_BUCKETS if area < limit)


def summarize(results: List[MaskResult], images: int, max_clicks: int = MAX_CLICKS) -> Dict[str, Any]:
    if not results:
        return {"images": images, "masks": 0}
    summary: Dict[str, Any] = {
        "images": images,
        "masks": len(results),
        "miou_1click": float(np.mean([r.ious[0] for r in results])),
        "noc85": float(np.mean([r.clicks_to(0.85, max_clicks) for r in results])),
        "noc90": float(np.mean([r.clicks_to(0.90, max_clicks) for r in results])),
        "max_clicks": max_clicks,
        "protocol": "RITM clicks; 1st click: deepest mask point, best of 3 by predicted IoU",
    }
    summary["miou_at_clicks"] = {str(k): float(np.mean([r.iou_after(k) for r in results]))
                                 for k in CURVE_CLICKS if k <= max_clicks}
    for key, attr in (("miou_1click_oracle", "oracle_iou"), ("miou_1click_disk", "disk_iou"),
                      ("miou_1click_blank", "blank_iou")):
        values = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
        if len(values) == len(results):
            summary[key] = float(np.mean(values))
    by_size = {}
    for name, _ in SIZE_BUCKETS:
        bucket = [r for r in results if size_bucket(r.area) == name]
        if bucket:
            by_size[name] = {"masks": len(bucket),
                             "miou_1click": float(np.mean([r.ious[0] for r in bucket])),
                             "noc90": float(np.mean([r.clicks_to(0.90, max_clicks) for r in bucket]))}
    summary["by_size"] = by_size
    summary["iou_head"] = iou_head_figures([p for r in results for p in r.first_click_pairs])
    return summary


def iou_head_figures(pairs: List[tuple[float, float]]) -> Dict[str, Any]:
    """Predicted against true IoU: correlation (None when either side does not vary), mean
    absolute error, and per tenth of predicted IoU the mean of both (empty tenths left out)."""
    predicted = np.array([p for p, _ in pairs], np.float64)
    true = np.array([t for _, t in pairs], np.float64)
    varies = len(pairs) > 1 and predicted.std() > 0 and true.std() > 0
    bins = []
    tenth = np.minimum((np.clip(predicted, 0, 1) * 10).astype(int), 9)
    for b in range(10):
        inside = tenth == b
        if inside.any():
            bins.append({"from": b / 10, "to": (b + 1) / 10, "count": int(inside.sum()),
                         "predicted": float(predicted[inside].mean()), "true": float(true[inside].mean())})
    return {"pairs": len(pairs),
            "pearson": float(np.corrcoef(predicted, true)[0, 1]) if varies else None,
            "mean_abs_error": float(np.abs(predicted - true).mean()) if pairs else 0.0,
            "bins": bins}


def choose_masks(count: int, limit: Optional[int], rng: np.random.Generator) -> List[int]:
    """Indices of the masks to evaluate: all, or `limit` of them at random, in annotation order."""
    if limit is None or count <= limit:
        return list(range(count))
    return sorted(int(i) for i in rng.choice(count, limit, replace=False))


def evaluate(sam: Sam, dataset: CocoInstances, max_images: Optional[int] = None,
             max_masks_per_image: Optional[int] = None, max_clicks: int = MAX_CLICKS,
             use_ignore: bool = True, progress: Optional[Callable[[int, int], None]] = None,
             cancel: Optional[Callable[[], bool]] = None, seed: int = 0,
             blank_check: bool = True) -> Dict[str, Any]:
    """1-click mIoU and NoC@85/90 over the dataset's first `max_images` images (all masks, or
    `max_masks_per_image` of each chosen at random with `seed`). `blank_check` also runs each first
    click on a grey image (one more encoder pass per image) for `miou_1click_blank`."""
    sam.eval()
    predictor = SamPredictor(sam)
    image_ids = dataset.image_ids[:max_images] if max_images else dataset.image_ids
    rng = np.random.default_rng(seed)
    results: List[MaskResult] = []
    for n, image_id in enumerate(image_ids, start=1):
        if cancel is not None and cancel():
            raise InterruptedError(f"evaluation cancelled after {n - 1} images")
        sample = dataset.load(image_id)
        predictor.set_image(sample.image)
        ignore = sample.ignore if use_ignore else None
        chosen = choose_masks(len(sample.masks), max_masks_per_image, rng)
        image_results = [evaluate_mask(predictor, sample.masks[k], ignore, max_clicks) for k in chosen]
        if blank_check and chosen:
            predictor.set_image(np.full_like(sample.image, 128))
            for k, result in zip(chosen, image_results):
                blank = predict_one_click(predictor, result.first_click)[0][0]
                result.blank_iou = iou(blank, sample.masks[k], ignore)
        results += image_results
        if progress is not None:
            progress(n, len(image_ids))
    return summarize(results, len(image_ids), max_clicks)
