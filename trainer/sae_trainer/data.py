"""COCO-instance datasets (images + RLE/polygon annotations, read with pycocotools) in a local folder,
and SAM's image preprocessing (sam-spec §1): resize the longest side to the model size with PIL
bilinear (segment_anything's ResizeLongestSide), normalise, zero-pad bottom/right.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from segment_anything.utils.transforms import ResizeLongestSide

from .model import PIXEL_MEAN, PIXEL_STD
from .prompts import mask_to_box

ANNOTATION_CANDIDATES = ("annotations.json", "instances.json", "coco.json",
                         "annotations/instances.json", "annotations/annotations.json")


def find_annotation_file(root: str) -> str:
    """The COCO instances JSON of a dataset folder: a known name, else the only instances*.json."""
    for name in ANNOTATION_CANDIDATES:
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    found = [os.path.join(d, f) for d in (root, os.path.join(root, "annotations")) if os.path.isdir(d)
             for f in sorted(os.listdir(d)) if f.startswith("instances") and f.endswith(".json")]
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"no COCO annotation file in {root}: expected one of {ANNOTATION_CANDIDATES} or a single "
        f"instances*.json (found {found or 'none'}); pass the path explicitly")


def preprocess_image(image: np.ndarray, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(H, W, 3) uint8 RGB -> ((3, S, S) float32 normalised and padded, resized (H', W'))."""
    resized = ResizeLongestSide(image_size).apply_image(image)
    x = torch.from_numpy(resized).permute(2, 0, 1).float()
    x = (x - torch.tensor(PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(PIXEL_STD).view(3, 1, 1)
    h, w = resized.shape[:2]
    return F.pad(x, (0, image_size - w, 0, image_size - h)), (h, w)


def resize_masks(masks: np.ndarray, resized_hw: tuple[int, int], size: int) -> torch.Tensor:
    """(M, H, W) bool masks -> (M, size, size) float {0,1} in the padded model frame."""
    if len(masks) == 0:
        return torch.zeros((0, size, size))
    t = torch.from_numpy(masks.astype(np.float32))[:, None]
    t = F.interpolate(t, size=resized_hw, mode="bilinear", align_corners=False)[:, 0]
    t = (t > 0.5).float()
    return F.pad(t, (0, size - resized_hw[1], 0, size - resized_hw[0]))


def downsample_masks(masks: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Binary masks at 1/factor resolution (the decoder's low-res output), by area vote."""
    if len(masks) == 0:
        return masks[:, ::factor, ::factor]
    return (F.avg_pool2d(masks[:, None], factor)[:, 0] >= 0.5).float()


def load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class RleMasks:
    """The instance masks of one image as COCO RLEs, decoded only when indexed.

    Indexing with an int gives one (H, W) bool mask, with a sequence of ints a (K, H, W) stack, as a
    (M, H, W) array would; `boxes()` reads every mask's box from its RLE without decoding it.
    Training uses a few masks of each image, so decoding them all would be most of its data time.
    """

    def __init__(self, rles: list) -> None:
        self.rles = rles

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return mask_utils.decode(self.rles[int(index)]).astype(bool)
        indices = [int(i) for i in index]
        if not indices:
            h, w = self.rles[0]["size"] if self.rles else (0, 0)
            return np.zeros((0, h, w), bool)
        return np.moveaxis(mask_utils.decode([self.rles[i] for i in indices]), -1, 0).astype(bool)

    def boxes(self) -> np.ndarray:
        """(M, 4) tight XYXY boxes with corners on pixel indices, as `mask_to_box` gives."""
        if not self.rles:
            return np.zeros((0, 4), np.float32)
        x, y, w, h = mask_utils.toBbox(self.rles).T
        return np.stack([x, y, x + w - 1, y + h - 1], axis=1).astype(np.float32)


Masks = Union[np.ndarray, RleMasks]


def instance_boxes(masks: Masks) -> np.ndarray:
    """(M, 4) tight XYXY boxes of (M, H, W) bool masks or RleMasks, in original pixels."""
    if isinstance(masks, RleMasks):
        return masks.boxes()
    return np.stack([mask_to_box(m) for m in masks]) if len(masks) else np.zeros((0, 4), np.float32)


@dataclass
class Sample:
    image_id: int
    image: np.ndarray  # (H, W, 3) uint8 RGB, original size
    masks: Masks  # (M, H, W) bool, none empty
    ignore: Optional[np.ndarray]  # (H, W) bool: crowd regions, excluded from evaluation IoU


class CocoInstances:
    """A COCO instances dataset in a local folder. Images are looked up at `file_name` relative to
    the folder, its `images/` subfolder or the annotation file's folder."""

    def __init__(self, root: str, ann_file: Optional[str] = None,
                 image_ids: Optional[Sequence[int]] = None, min_area: int = 1) -> None:
        self.root = root
        self.ann_file = ann_file or find_annotation_file(root)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco = COCO(self.ann_file)
        self.min_area = min_area
        ids = sorted(self.coco.getImgIds()) if image_ids is None else list(image_ids)
        # Images without a usable mask teach nothing.
        self.image_ids: List[int] = [i for i in ids if self._annotations(i)]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _annotations(self, image_id: int) -> list:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id]))
        return [a for a in anns if not a.get("iscrowd", 0) and a.get("area", 1) >= self.min_area]

    def image_path(self, image_id: int) -> str:
        name = self.coco.imgs[image_id]["file_name"]
        for base in (self.root, os.path.join(self.root, "images"), os.path.dirname(self.ann_file)):
            path = os.path.join(base, name)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(f"image {name!r} (id {image_id}) not found under {self.root}")

    def load(self, image_id: int) -> Sample:
        info = self.coco.imgs[image_id]
        image = load_rgb(self.image_path(image_id))
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"image {image_id}: file is {image.shape[1]}x{image.shape[0]}, "
                             f"annotations say {info['width']}x{info['height']}")
        rles = [self.coco.annToRLE(a) for a in self._annotations(image_id)]
        masks = RleMasks([r for r in rles if mask_utils.area(r) > 0])
        crowd = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=True))
        crowd = [a for a in crowd if a.get("iscrowd", 0)]
        ignore = np.any([self.coco.annToMask(a).astype(bool) for a in crowd], axis=0) if crowd else None
        return Sample(image_id, image, masks, ignore)

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple["CocoInstances", "CocoInstances"]:
        """Deterministic (train, held-out) split by image."""
        rng = np.random.default_rng(seed)
        ids = np.array(self.image_ids)
        rng.shuffle(ids)
        n_hold = int(round(len(ids) * holdout_fraction))
        return self._subset(sorted(ids[n_hold:])), self._subset(sorted(ids[:n_hold]))

    def _subset(self, ids: Sequence[int]) -> "CocoInstances":
        sub = object.__new__(CocoInstances)
        sub.__dict__.update(self.__dict__)
        sub.image_ids = [int(i) for i in ids]
        return sub


def write_coco(root: str, images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
               ann_name: str = "annotations.json") -> str:
    """Write images (PNG) and their instance masks as a COCO instances JSON with RLE segmentations.

    Used by tests and benchmarks before `sa-engine synth` data is at hand."""
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    for image_id, (image, image_masks) in enumerate(zip(images, masks), start=1):
        name = f"images/{image_id:06d}.png"  # relative to the root, as `sa-engine synth` writes
        Image.fromarray(image).save(os.path.join(root, name))
        h, w = image.shape[:2]
        coco["images"].append({"id": image_id, "file_name": name, "height": h, "width": w})
        for m in image_masks:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                "area": int(m.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0})
    path = os.path.join(root, ann_name)
    with open(path, "w") as f:
        json.dump(coco, f)
    return path


def synthetic_shapes(n_images: int, size: tuple[int, int] = (96, 128), max_objects: int = 4,
                     seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Noisy images of random coloured ellipses and rectangles, and their (non-overlapping) masks."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    images, all_masks = [], []
    for _ in range(n_images):
        image = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8) + 40
        taken = np.zeros((h, w), bool)
        masks = []
        for _ in range(rng.integers(1, max_objects + 1)):
            cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
            ry, rx = rng.uniform(0.08, 0.25) * h, rng.uniform(0.08, 0.25) * w
            if rng.random() < 0.5:
                m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                m = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
            m &= ~taken  # later shapes are occluded by earlier ones: masks stay disjoint
            if m.sum() < 20:
                continue
            image[m] = rng.integers(120, 256, size=3)
            taken |= m
            masks.append(m)
        images.append(image)
        all_masks.append(np.array(masks, dtype=bool).reshape(-1, h, w))
    return images, all_masks
