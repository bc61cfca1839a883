"""Turn a folder of images and single-object label masks (GrabCut style: 255 object, 0 background,
128 unlabelled band) into a COCO instances dataset the evaluator reads. The band becomes a crowd
annotation, which evaluate.py leaves out of the IoU and of click placement.

    python trainer/scripts/masks_to_coco.py --images DIR --masks DIR --out DIR

The images are linked (not copied) into OUT/images/.
"""
import argparse
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def rle(binary: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--object", type=int, default=255)
    parser.add_argument("--ignore", type=int, default=128)
    args = parser.parse_args()

    masks = {os.path.splitext(name)[0]: name for name in os.listdir(args.masks)}
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    dataset = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for image_id, name in enumerate(sorted(os.listdir(args.images)), start=1):
        stem = os.path.splitext(name)[0]
        if stem not in masks:
            continue
        labels = np.array(Image.open(os.path.join(args.masks, masks[stem])).convert("L"))
        link = os.path.join(args.out, "images", name)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(args.images, name)), link)
        h, w = labels.shape
        dataset["images"].append({"id": image_id, "file_name": f"images/{name}", "width": w, "height": h})
        for iscrowd, value in ((0, args.object), (1, args.ignore)):
            region = labels == value
            if region.any():
                encoded = rle(region)
                dataset["annotations"].append({
                    "id": len(dataset["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                    "segmentation": encoded, "area": int(region.sum()),
                    "bbox": [float(v) for v in mask_utils.toBbox(encoded)], "iscrowd": iscrowd})
    with open(os.path.join(args.out, "annotations.json"), "w") as f:
        json.dump(dataset, f)
    print(f"{len(dataset['images'])} images, {len(dataset['annotations'])} annotations -> {args.out}")


if __name__ == "__main__":
    main()
