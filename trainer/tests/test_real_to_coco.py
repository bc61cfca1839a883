"""scripts/real_to_coco.py on tiny stand-ins of the three real training sets' layouts."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "real_to_coco.py")


def write_png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_builds_one_coco_folder_from_the_three_layouts(tmp_path):
    data = tmp_path / "data"
    photo = np.zeros((20, 30, 3), np.uint8)
    # duts_subset: one salient mask per photo (255 = object).
    write_png(str(data / "duts_subset/images/a.jpg"), photo)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:15] = 255
    write_png(str(data / "duts_subset/masks/a.png"), mask)
    # bsds_train: 16-bit partitions, one region too small to keep.
    write_png(str(data / "bsds_train/images/1.jpg"), photo)
    labels = np.ones((20, 30), np.uint16)
    labels[:, 15:] = 2
    labels[0, 0] = 3  # 1 pixel of 600: under 0.5%
    os.makedirs(data / "bsds_train/partitions")
    Image.fromarray(labels).save(str(data / "bsds_train/partitions/1_0.png"))
    (data / "bsds_train/manifest.json").write_text(json.dumps({"items": {"1": {
        "image": "images/1.jpg", "partitions": [{"file": "partitions/1_0.png", "segments": 3}]}}}))
    # pennfudan: instance ids.
    write_png(str(data / "pennfudan/images/p.jpg"), photo)
    instances = np.zeros((20, 30), np.uint8)
    instances[2:8, 2:6], instances[10:18, 20:25] = 1, 2
    write_png(str(data / "pennfudan/masks/p.png"), instances)
    (data / "pennfudan/manifest.json").write_text(json.dumps({"items": [
        {"image": "images/p.jpg", "mask": "masks/p.png", "instances": [1, 2]}]}))

    out = tmp_path / "out"
    subprocess.run([sys.executable, SCRIPT, "--data", str(data), "--out", str(out)], check=True)
    coco = json.loads((out / "annotations.json").read_text())
    names = [image["file_name"] for image in coco["images"]]
    assert names == ["images/duts/a.jpg", "images/bsds/1.jpg", "images/pennfudan/p.jpg"]
    per_image = [sum(a["image_id"] == image["id"] for a in coco["annotations"]) for image in coco["images"]]
    assert per_image == [1, 2, 2]
    assert [a["area"] for a in coco["annotations"]][:1] == [50]
    assert all(os.path.exists(out / name) for name in names)


def write_coco(root, file_name):
    write_png(str(root / "images/s.png"), np.zeros((10, 12, 3), np.uint8))
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:9] = 1
    from pycocotools import mask as mask_utils
    encoded = mask_utils.encode(np.asfortranarray(mask))
    encoded["counts"] = encoded["counts"].decode("ascii")
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": file_name, "width": 12, "height": 10}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "segmentation": encoded,
                         "area": 18, "bbox": [3, 2, 6, 3], "iscrowd": 0}]}))


def test_adds_an_existing_coco_folder_beside_the_real_sets(tmp_path):
    synth = tmp_path / "synth"
    write_coco(synth, "images/s.png")
    out = tmp_path / "out"
    subprocess.run([sys.executable, SCRIPT, "--data", str(tmp_path / "none"), "--sets", "",
                    "--with-coco", str(synth), "--out", str(out)], check=True)
    coco = json.loads((out / "annotations.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == ["images/coco0/images/s.png"]
    assert [(a["image_id"], a["area"], a["bbox"]) for a in coco["annotations"]] == [(1, 18, [3, 2, 6, 3])]
    assert os.path.exists(out / "images/coco0/images/s.png")


def test_refuses_a_coco_folder_whose_file_names_leave_it(tmp_path):
    synth = tmp_path / "synth"
    write_coco(synth, "../outside.png")
    run = subprocess.run([sys.executable, SCRIPT, "--data", str(tmp_path / "none"), "--sets", "",
                          "--with-coco", str(synth), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "leaves the folder" in run.stderr
