"""Pillow oracle for test/integration/preprocess-pil-parity.test.ts.

SAM resizes with torchvision's resize(to_pil_image(image), (h', w')), i.e. Pillow's
Image.resize((w', h'), Image.BILINEAR) on the uint8 RGB image. This script runs exactly that on
pixels decoded by the TypeScript side, so lib/sam/resize-longest-side.ts can be compared byte for byte
with the reference. When segment_anything is importable (trainer/.venv), the "native" output comes
from its own ResizeLongestSide.apply_image instead, which goes through torchvision as SAM does.

Request (JSON on stdin):
  dir:   folder holding <id>.rgb inputs (raw RGB, row-major, 3 bytes per pixel); outputs go there
  cases: [{id, width, height, out_width, out_height, sam, tensor, file}]
         sam:    true when (out_width, out_height) is SAM's target size for a 1024 longest side
         tensor: also write SAM's normalised, padded 1x3x1024x1024 float32 tensor
         file:   optional path of the original file, to compare decoding as well
Answer (JSON on stdout):
  pillow, numpy, torch, torchvision (or null), segment_anything (bool), cv2 (or null);
  the tensor is computed with torch when it is installed, else with numpy (same float32 ops)
  cases: [{id, native, hfirst, vfirst, tensor, pil_decoded, cv2_decoded}] output file names;
         hfirst/vfirst are two single-axis resizes in that order (how Pillow releases differ),
         written only when both axes change; decoded files only when `file` was given.
"""

import json
import os
import sys

import numpy as np
import PIL
from PIL import Image, ImageOps

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
SIZE = 1024

try:
    import torch
except ImportError:
    torch = None

try:
    import torchvision
    from segment_anything.utils.transforms import ResizeLongestSide

    SAM_TRANSFORM = ResizeLongestSide(SIZE)
    TORCHVISION = torchvision.__version__
except ImportError:
    SAM_TRANSFORM = None
    TORCHVISION = None

try:
    import cv2

    CV2 = cv2.__version__
except ImportError:
    cv2 = None
    CV2 = None


def pil_resize(image, width, height):
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def native_resize(image, case):
    """SAM's own transform when available (it must agree on the size), else Pillow directly."""
    if case["sam"] and SAM_TRANSFORM is not None:
        out = SAM_TRANSFORM.apply_image(image)
        assert out.shape[:2] == (case["out_height"], case["out_width"]), out.shape
        return out
    return pil_resize(image, case["out_width"], case["out_height"])


def sam_tensor(resized):
    """Sam.preprocess in float32: (x - mean) / std per channel, CHW, zero-pad bottom/right."""
    if torch is not None:
        # Exactly SamPredictor.set_image + Sam.preprocess (pixel_mean/std are float32 buffers).
        x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None, :, :, :]
        x = (x - torch.Tensor(MEAN.tolist()).view(-1, 1, 1)) / torch.Tensor(STD.tolist()).view(-1, 1, 1)
        h, w = x.shape[-2:]
        return torch.nn.functional.pad(x, (0, SIZE - w, 0, SIZE - h)).numpy()
    normalised = (resized.astype(np.float32) - MEAN) / STD
    tensor = np.zeros((1, 3, SIZE, SIZE), dtype=np.float32)
    h, w = resized.shape[:2]
    tensor[0, :, :h, :w] = normalised.transpose(2, 0, 1)
    return tensor


def decode_with_pil(path):
    """What Image.open(...).convert('RGB') gives, upright (EXIF orientation applied like cv2)."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def decode_with_cv2(path):
    """What SAM's scripts/amg.py does: cv2.imread (BGR, EXIF applied) then BGR -> RGB."""
    bgr = cv2.imread(path)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write(folder, name, array):
    np.ascontiguousarray(array).tofile(os.path.join(folder, name))
    return name


def run_case(folder, case):
    w, h, ow, oh = case["width"], case["height"], case["out_width"], case["out_height"]
    image = np.fromfile(os.path.join(folder, case["id"] + ".rgb"), dtype=np.uint8).reshape(h, w, 3)
    answer = {"id": case["id"]}
    native = native_resize(image, case)
    answer["native"] = write(folder, case["id"] + ".native.rgb", native)
    if w != ow and h != oh:
        hfirst = pil_resize(pil_resize(image, ow, h), ow, oh)
        vfirst = pil_resize(pil_resize(image, w, oh), ow, oh)
        answer["hfirst"] = write(folder, case["id"] + ".hfirst.rgb", hfirst)
        answer["vfirst"] = write(folder, case["id"] + ".vfirst.rgb", vfirst)
    if case.get("tensor"):
        answer["tensor"] = write(folder, case["id"] + ".tensor.f32", sam_tensor(native))
    if case.get("file"):
        answer["pil_decoded"] = write(folder, case["id"] + ".pil.rgb", decode_with_pil(case["file"]))
        if cv2 is not None:
            decoded = decode_with_cv2(case["file"])
            if decoded is not None:
                answer["cv2_decoded"] = write(folder, case["id"] + ".cv2.rgb", decoded)
    return answer


def main():
    request = json.load(sys.stdin)
    cases = [run_case(request["dir"], case) for case in request["cases"]]
    json.dump(
        {
            "pillow": PIL.__version__,
            "numpy": np.__version__,
            "torch": None if torch is None else torch.__version__,
            "torchvision": TORCHVISION,
            "segment_anything": SAM_TRANSFORM is not None,
            "cv2": CV2,
            "cases": cases,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
