"""Reads a COCO instances file with pycocotools, as a dataset user would, and reports each
annotation's decoded mask area and its bbox as pycocotools computes them.

stdin: {"file": "<path of the COCO JSON>"}; stdout: {"images": n, "annotations": [{"id", "area",
"bbox", "decoded"}]} where `decoded` is the pixel count of annToMask (the mask actually decoded).
"""

import contextlib
import json
import sys

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def main() -> None:
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # COCO() prints its progress
        coco = COCO(request["file"])
    answers = []
    for ann_id in sorted(coco.getAnnIds()):
        ann = coco.loadAnns(ann_id)[0]
        rle = coco.annToRLE(ann)
        answers.append(
            {
                "id": ann_id,
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "decoded": int(coco.annToMask(ann).sum()),
            }
        )
    json.dump({"images": len(coco.getImgIds()), "annotations": answers}, sys.stdout)


if __name__ == "__main__":
    main()
