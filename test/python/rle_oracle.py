"""pycocotools oracle for test/integration/rle-pycocotools.test.ts.

Reads one JSON request on stdin and writes one JSON answer on stdout, computing everything with
pycocotools itself so the TypeScript RLE code (lib/rle.ts) can be compared with the reference.

Request:
  masks:   [{h, w, data}]            data = base64 of the row-major h*w mask bytes (0/1)
  strings: [{h, w, counts}]          compressed RLE strings to decode (e.g. from SA-1B files)
  iou:     [{dts, gts, iscrowd}]     indices into masks; iscrowd has one 0/1 per gt
  merge:   [[index, ...]]            indices into masks, all of one size
Answer:
  masks:   [{counts, area, bbox, decoded_sha256}]  decoded_sha256 of the row-major 0/1 bytes
  strings: [{area, bbox, decoded_sha256}]
  iou:     [{plain, crowd}]          matrices [dt][gt], without and with iscrowd
  merge:   [{union, intersection}]   compressed strings
"""

import base64
import hashlib
import json
import sys

import numpy as np
from pycocotools import mask as mask_utils


def decoded_sha256(rle):
    # decode gives an h x w (Fortran-ordered) array; hash it in row-major (C) order.
    decoded = np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)
    return hashlib.sha256(decoded.tobytes()).hexdigest()


def describe(rle):
    return {
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "decoded_sha256": decoded_sha256(rle),
    }


def encode(item):
    data = np.frombuffer(base64.b64decode(item["data"]), dtype=np.uint8)
    mask = np.asfortranarray(data.reshape(item["h"], item["w"]))
    return mask_utils.encode(mask)


def iou_matrix(dts, gts, iscrowd):
    result = mask_utils.iou(dts, gts, iscrowd)
    return np.asarray(result, dtype=np.float64).reshape(len(dts), len(gts)).tolist()


def main():
    request = json.load(sys.stdin)
    rles = [encode(item) for item in request.get("masks", [])]
    answer = {
        "masks": [dict(counts=r["counts"].decode("ascii"), **describe(r)) for r in rles],
        "strings": [
            describe({"size": [s["h"], s["w"]], "counts": s["counts"].encode("ascii")})
            for s in request.get("strings", [])
        ],
        "iou": [],
        "merge": [],
    }
    for group in request.get("iou", []):
        dts = [rles[i] for i in group["dts"]]
        gts = [rles[i] for i in group["gts"]]
        answer["iou"].append(
            {
                "plain": iou_matrix(dts, gts, [0] * len(gts)),
                "crowd": iou_matrix(dts, gts, [int(c) for c in group["iscrowd"]]),
            }
        )
    for group in request.get("merge", []):
        parts = [rles[i] for i in group]
        answer["merge"].append(
            {
                "union": mask_utils.merge(parts, intersect=0)["counts"].decode("ascii"),
                "intersection": mask_utils.merge(parts, intersect=1)["counts"].decode("ascii"),
            }
        )
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
