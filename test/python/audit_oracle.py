"""pycocotools oracle for test/integration/audit-pycocotools.test.ts.

Recomputes the audit of lib/audit/ from the same files with an independent toolchain: label images
read with Pillow, masks encoded and compared with pycocotools (`maskUtils.iou`), figures with numpy.
Reads one JSON request on stdin and writes one JSON answer on stdout.

Request:
  images:   [{label_path, ignore_value, masks_json}]
            label_path:   a label image (0 background, every other value one object)
            ignore_value: a grey level left out of IoU, or null
            masks_json:   the text of the run's SA-1B per-image JSON (the automatic masks)
  polygons: [{h, w, polygons}]   COCO polygon segmentations of one object each
Answer:
  images:   [{labels, iou}]      labels: the object labels in order; iou[auto][human]
  figures:  {humanMasks, meanIou, shareAbove090, shareAbove075, histogram, recall, precision,
             bySizeCount, bySizeMeanIou}
  polygons: [counts]             compressed RLE strings of frPyObjects + merge
"""

import json
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

HISTOGRAM_BINS = 20


def labels_of(path):
    """Grey pixels have their grey level as label, coloured ones 256 + 0xRRGGBB (as lib/audit/labels.ts)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    grey = (r == g) & (g == b)
    return np.where(grey, r, 256 + ((r << 16) | (g << 8) | b))


def encode(mask):
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def audit_image(item):
    labels = labels_of(item["label_path"])
    ignore_value = item["ignore_value"]
    values = sorted(int(v) for v in np.unique(labels) if v != 0 and v != ignore_value)
    humans = [encode(labels == v) for v in values]
    keep = np.ones(labels.shape, dtype=bool) if ignore_value is None else labels != ignore_value

    sa1b = json.loads(item["masks_json"])
    autos = []
    for annotation in sa1b["annotations"]:
        seg = annotation["segmentation"]
        decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")})
        autos.append(encode(decoded.astype(bool) & keep))

    if autos and humans:
        iou = np.asarray(mask_utils.iou(autos, humans, [0] * len(humans)), dtype=np.float64)
        iou = iou.reshape(len(autos), len(humans))
    else:
        iou = np.zeros((len(autos), len(humans)))
    areas = [int(mask_utils.area(h)) for h in humans]
    return values, iou, areas


def greedy_pairs(iou):
    """One-to-one pairs, highest IoU first; ties to the lower human, then the lower auto index."""
    candidates = [
        (-iou[a, h], h, a) for a in range(iou.shape[0]) for h in range(iou.shape[1]) if iou[a, h] > 0
    ]
    candidates.sort()
    used_h, used_a, pairs = set(), set(), []
    for neg, h, a in candidates:
        if h in used_h or a in used_a:
            continue
        used_h.add(h)
        used_a.add(a)
        pairs.append((h, a, -neg))
    return pairs


def histogram_bin(value):
    """The number of bin edges k/20 (k = 1..19) at or below the value."""
    return sum(1 for k in range(1, HISTOGRAM_BINS) if value >= k / HISTOGRAM_BINS)


def size_class(area):
    return "small" if area < 32 * 32 else "medium" if area < 96 * 96 else "large"


def figures(results):
    best, pair_human, pair_auto, areas = [], [], [], []
    for _, iou, image_areas in results:
        n_auto, n_human = iou.shape
        best.extend(iou.max(axis=0).tolist() if n_auto else [0.0] * n_human)
        ph, pa = [0.0] * n_human, [0.0] * n_auto
        for h, a, value in greedy_pairs(iou):
            ph[h], pa[a] = value, value
        pair_human.extend(ph)
        pair_auto.extend(pa)
        areas.extend(image_areas)
    best = np.asarray(best)
    pair_human = np.asarray(pair_human)
    histogram = [0] * HISTOGRAM_BINS
    for value in best:
        histogram[histogram_bin(float(value))] += 1
    classes = [size_class(a) for a in areas]
    by_size_count = {c: classes.count(c) for c in ("small", "medium", "large")}
    by_size_mean = {
        c: (float(np.mean([b for b, k in zip(best, classes) if k == c])) if by_size_count[c] else None)
        for c in by_size_count
    }
    return {
        "humanMasks": int(best.size),
        "meanIou": float(best.mean()),
        "shareAbove090": float((best > 0.9).mean()),
        "shareAbove075": float((best > 0.75).mean()),
        "histogram": histogram,
        "recall": {
            "at050": float((pair_human >= 0.5).mean()),
            "at075": float((pair_human >= 0.75).mean()),
            "at090": float((pair_human >= 0.9).mean()),
        },
        "precision": float(np.mean(np.asarray(pair_auto) >= 0.5)) if pair_auto else None,
        "bySizeCount": by_size_count,
        "bySizeMeanIou": by_size_mean,
    }


def polygon_counts(item):
    rles = mask_utils.frPyObjects(item["polygons"], item["h"], item["w"])
    return mask_utils.merge(rles)["counts"].decode("ascii")


def main():
    request = json.load(sys.stdin)
    results = [audit_image(item) for item in request.get("images", [])]
    answer = {
        "images": [{"labels": values, "iou": iou.tolist()} for values, iou, _ in results],
        "figures": figures(results) if results else None,
        "polygons": [polygon_counts(item) for item in request.get("polygons", [])],
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
