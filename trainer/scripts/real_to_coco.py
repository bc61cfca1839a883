"""Turn the real training photos of ../shared/data (research licences: read in place, never copied
into the project) into one COCO instances folder that `sae_trainer train` reads.

    python trainer/scripts/real_to_coco.py --data $SAE_REAL_DATA --out DIR [--sets duts,bsds,pennfudan]

- duts_subset: one salient-object mask per photo (255 = object).
- bsds_train: per photo, the partition of one annotator (the k-th, k = photo index mod the number
  of partitions, so every annotator's granularity appears), each region of at least
  --min-area of the photo one mask: objects and parts, as SA-1B has both.
- pennfudan: one mask per pedestrian instance.

GrabCut is never read here: it stays the held-out evaluation (masks_to_coco.py builds that set).
Images are linked, not copied, into OUT/images/<set>/.

`--with-coco DIR` adds an existing COCO folder (e.g. `sa-engine synth` output) to the same set, so
that a fine-tune on real photos keeps seeing the scenes the model already knows (trained on real
photos alone, sae-ref forgot its synthetic scenes within 60 steps).
"""
import argparse
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

SETS = ("duts", "bsds", "pennfudan")


def rle(binary: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


class Builder:
    def __init__(self, out: str) -> None:
        self.out = out
        self.dataset = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}

    def add_image(self, source: str, name: str, masks: list) -> None:
        if not masks:
            return
        h, w = masks[0].shape
        self.add_encoded(source, name, w, h, [rle(region) for region in masks])

    def add_encoded(self, source: str, name: str, width: int, height: int, encoded: list) -> None:
        link = os.path.join(self.out, "images", name)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(source), link)
        image_id = len(self.dataset["images"]) + 1
        self.dataset["images"].append({"id": image_id, "file_name": f"images/{name}",
                                       "width": width, "height": height})
        for segmentation in encoded:
            self.dataset["annotations"].append({
                "id": len(self.dataset["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": segmentation, "area": int(mask_utils.area(segmentation)),
                "bbox": [float(v) for v in mask_utils.toBbox(segmentation)], "iscrowd": 0})


def labels(path: str) -> np.ndarray:
    return np.array(Image.open(path))


def add_duts(b: Builder, root: str) -> None:
    for name in sorted(os.listdir(os.path.join(root, "images"))):
        stem = os.path.splitext(name)[0]
        mask = labels(os.path.join(root, "masks", f"{stem}.png")) > 0
        b.add_image(os.path.join(root, "images", name), f"duts/{name}", [mask] if mask.any() else [])


def add_bsds(b: Builder, root: str, min_area: float) -> None:
    with open(os.path.join(root, "manifest.json")) as f:
        items = json.load(f)["items"]
    for index, (key, item) in enumerate(sorted(items.items())):
        partitions = item["partitions"]
        partition = labels(os.path.join(root, partitions[index % len(partitions)]["file"]))
        masks = [partition == v for v in np.unique(partition) if v > 0]
        masks = [m for m in masks if m.mean() >= min_area]
        b.add_image(os.path.join(root, item["image"]), f"bsds/{os.path.basename(item['image'])}", masks)


def add_pennfudan(b: Builder, root: str) -> None:
    with open(os.path.join(root, "manifest.json")) as f:
        items = json.load(f)["items"]
    for item in items:
        instances = labels(os.path.join(root, item["mask"]))
        masks = [instances == v for v in item["instances"]]
        b.add_image(os.path.join(root, item["image"]), f"pennfudan/{os.path.basename(item['image'])}",
                    [m for m in masks if m.any()])


def add_coco(b: Builder, root: str, prefix: str) -> None:
    """Every image of a COCO instances folder with its RLE masks (polygons are not read)."""
    with open(os.path.join(root, "annotations.json")) as f:
        coco = json.load(f)
    by_image: dict = {}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd") and isinstance(ann["segmentation"], dict):
            by_image.setdefault(ann["image_id"], []).append(ann["segmentation"])
    for image in coco["images"]:
        if image["id"] in by_image:
            name = os.path.normpath(image["file_name"])
            if name.startswith("..") or os.path.isabs(name):
                raise ValueError(f"{root}: file_name {image['file_name']!r} leaves the folder")
            b.add_encoded(os.path.join(root, name), f"{prefix}/{name}", image["width"],
                          image["height"], by_image[image["id"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the shared data folder (SAE_REAL_DATA)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--min-area", type=float, default=0.005, help="BSDS regions: least fraction of the photo")
    parser.add_argument("--with-coco", action="append", default=[], metavar="DIR",
                        help="also add this COCO folder's images and RLE masks (repeatable)")
    args = parser.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    unknown = set(sets) - set(SETS)
    if unknown:
        parser.error(f"unknown sets {sorted(unknown)}; known: {', '.join(SETS)}")

    b = Builder(args.out)
    if "duts" in sets:
        add_duts(b, os.path.join(args.data, "duts_subset"))
    if "bsds" in sets:
        add_bsds(b, os.path.join(args.data, "bsds_train"), args.min_area)
    if "pennfudan" in sets:
        add_pennfudan(b, os.path.join(args.data, "pennfudan"))
    for k, root in enumerate(args.with_coco):
        add_coco(b, root, f"coco{k}")
    with open(os.path.join(args.out, "annotations.json"), "w") as f:
        json.dump(b.dataset, f)
    print(f"{len(b.dataset['images'])} images, {len(b.dataset['annotations'])} masks -> {args.out}")


if __name__ == "__main__":
    main()
