"""The official segment-anything automatic mask generator over a list of images: the reference that
bench/amg.ts (speed) and bench/amg-parity.ts (masks) compare ours against, on the same weights.

    trainer/.venv/bin/python bench/official_amg.py --checkpoint CKPT --images LIST --out DIR \
        [--settings JSON] [--threads N]

LIST has one image path per line. Writes DIR/<index>.json (the records, output_mode="coco_rle",
as scripts/amg.py --convert-to-rle writes them) and DIR/timings.json (seconds per image).
"""
import argparse
import json
import math
import os
import sys
import time

import cv2
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "trainer"))
from segment_anything import SamAutomaticMaskGenerator  # noqa: E402
from sae_trainer.model import load_checkpoint  # noqa: E402

# Our run-config names -> SamAutomaticMaskGenerator's keyword arguments.
SETTING_NAMES = {
    "pointsPerSide": "points_per_side",
    "pointsPerBatch": "points_per_batch",
    "predIouThresh": "pred_iou_thresh",
    "stabilityScoreThresh": "stability_score_thresh",
    "stabilityScoreOffset": "stability_score_offset",
    "boxNmsThresh": "box_nms_thresh",
    "cropNLayers": "crop_n_layers",
    "cropNmsThresh": "crop_nms_thresh",
    "cropOverlapRatio": "crop_overlap_ratio",
    "cropNPointsDownscaleFactor": "crop_n_points_downscale_factor",
    "minMaskRegionArea": "min_mask_region_area",
}


def load_rgb(path: str):
    # As scripts/amg.py: cv2 decodes (applying EXIF orientation), then BGR -> RGB.
    image = cv2.imread(path)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def finite(record: dict) -> dict:
    # An empty mask's stability score is 0/0 = NaN (kept when the filter is off); JSON has no NaN,
    # and JavaScript's JSON.stringify writes null, so write null too.
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--settings", default="{}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sam, _cfg, _extra = load_checkpoint(args.checkpoint)
    sam.eval()
    settings = {SETTING_NAMES[k]: v for k, v in json.loads(args.settings).items() if k in SETTING_NAMES}
    generator = SamAutomaticMaskGenerator(sam, output_mode="coco_rle", **settings)

    os.makedirs(args.out, exist_ok=True)
    with open(args.images) as f:
        paths = [line.strip() for line in f if line.strip()]
    timings = []
    with torch.inference_mode():
        for index, path in enumerate(paths):
            image = load_rgb(path)
            started = time.perf_counter()
            records = generator.generate(image)
            timings.append(time.perf_counter() - started)
            with open(os.path.join(args.out, f"{index}.json"), "w") as f:
                json.dump([finite(record) for record in records], f)
    with open(os.path.join(args.out, "timings.json"), "w") as f:
        json.dump({"seconds": timings, "threads": torch.get_num_threads()}, f)


if __name__ == "__main__":
    main()
