"""Official segment-anything oracle for test/integration/amg-official-parity.test.ts.

Reads one JSON request on stdin and writes one JSON answer on stdout. Every answer is computed by
the official code (segment_anything.utils.amg, Sam.postprocess_masks, torchvision's batched_nms,
SamAutomaticMaskGenerator) so lib/amg/*.ts can be compared with it.

Request (every key optional; each is a list of cases, answered in order under the same key):
  point_grids:  [{n, layers, factor}]              -> [[[x, y], ...] per layer]
  crop_boxes:   [{h, w, layers, ratio}]            -> {boxes, layers}
  upsample:     [{h, w, low}]                      low = base64 float32 (k, 256, 256)
                                                   -> {logits: base64 float32 (k, h, w)}
  stability:    [{n, h, w, logits, offset}]        -> [float32 score as float, or null for NaN]
  mask_to_box:  [{n, h, w, data}]                  data = base64 uint8 (n, h, w) -> [[x0, y0, x1, y1]]
  near_edge:    [{boxes, crop_box, orig_box}]      -> [bool, ...]
  nms:          [{boxes, scores, thresh}]          scores are float32 values
                                                   -> {nms: [...], batched: [...]}
  small_regions:[{h, w, data, thresh, mode}]       -> {counts, changed}
  uncrop_rle:   [{h, w, data, crop_box, H, W}]     data = crop mask -> counts (image frame)
  amg:          [{h, w, settings}]                 the whole generator on a synthetic model
                                                   -> [record, ...] (output_mode="coco_rle")
The answer also carries `torch`: {threads, capability, version}.
"""

import base64
import json
import sys
from types import SimpleNamespace

import numpy as np
import torch
from segment_anything.automatic_mask_generator import SamAutomaticMaskGenerator
from segment_anything.modeling import Sam
from segment_anything.utils import amg
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops import batched_nms, nms

# With one thread torch resizes 3-channel inputs with its channels-last kernel, which rounds
# differently from the generic kernel it uses otherwise (UpSampleKernel.cpp). The official AMG
# runs on whatever the machine has; we pin the common multi-threaded case.
torch.set_num_threads(max(2, torch.get_num_threads()))

SAM_STUB = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024))


def b64_array(text, dtype, shape):
    return np.frombuffer(base64.b64decode(text), dtype=dtype).reshape(shape)


def b64_of(array, dtype):
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def postprocess_masks(low_res, crop_h, crop_w):
    """Sam.postprocess_masks, called on the official method with a stand-in model."""
    input_size = ResizeLongestSide.get_preprocess_shape(crop_h, crop_w, 1024)
    return Sam.postprocess_masks(SAM_STUB, low_res, input_size, (crop_h, crop_w))


def point_grids(case):
    grids = amg.build_all_layer_point_grids(case["n"], case["layers"], case["factor"])
    return [g.tolist() for g in grids]


def crop_boxes(case):
    boxes, layers = amg.generate_crop_boxes((case["h"], case["w"]), case["layers"], case["ratio"])
    return {"boxes": boxes, "layers": layers}


def upsample(case):
    low = torch.from_numpy(b64_array(case["low"], np.float32, (1, -1, 256, 256)).copy())
    with torch.no_grad():
        masks = postprocess_masks(low, case["h"], case["w"])
    return {"logits": b64_of(masks.numpy(), np.float32)}


def stability(case):
    logits = torch.from_numpy(b64_array(case["logits"], np.float32, (case["n"], case["h"], case["w"])).copy())
    scores = amg.calculate_stability_score(logits, 0.0, case["offset"])
    # JSON has no NaN: 0/0 (no logit above −offset) comes back as null.
    return [None if s != s else float(s) for s in scores.tolist()]


def mask_to_box(case):
    masks = torch.from_numpy(b64_array(case["data"], np.uint8, (case["n"], case["h"], case["w"])).astype(bool))
    return amg.batched_mask_to_box(masks).tolist()


def near_edge(case):
    boxes = torch.tensor(case["boxes"], dtype=torch.int64).reshape(-1, 4)
    return amg.is_box_near_crop_edge(boxes, case["crop_box"], case["orig_box"]).tolist()


def run_nms(case):
    boxes = torch.tensor(case["boxes"], dtype=torch.float32).reshape(-1, 4)
    scores = torch.tensor(case["scores"], dtype=torch.float32)
    categories = torch.zeros(len(scores))
    return {
        "nms": nms(boxes, scores, case["thresh"]).tolist(),
        "batched": batched_nms(boxes, scores, categories, case["thresh"]).tolist(),
    }


def small_regions(case):
    mask = b64_array(case["data"], np.uint8, (case["h"], case["w"])).astype(bool)
    out, changed = amg.remove_small_regions(mask, case["thresh"], case["mode"])
    counts = amg.mask_to_rle_pytorch(torch.from_numpy(np.ascontiguousarray(out))[None])[0]["counts"]
    return {"counts": counts, "changed": bool(changed)}


def uncrop_rle(case):
    mask = torch.from_numpy(b64_array(case["data"], np.uint8, (1, case["h"], case["w"])).astype(bool))
    full = amg.uncrop_masks(mask, case["crop_box"], case["H"], case["W"])
    return amg.mask_to_rle_pytorch(full)[0]["counts"]


# ---------------------------------------------------------------------------------------------
# The whole generator on a synthetic model. The test's TypeScript twin (syntheticLowRes in
# amg-official-parity.test.ts) computes the same logits with the same float64 operations.
# ---------------------------------------------------------------------------------------------


def synthetic_scene(h, w, n_objects):
    """Deterministic ellipses in image pixels: main objects, each with a satellite and a hole."""
    objects = []
    for i in range(n_objects):
        objects.append(
            {
                "cx": ((i * 97 + 13) % 89) / 89 * w,
                "cy": ((i * 61 + 7) % 83) / 83 * h,
                "rx": 8 + (i * 29 % 37) * w / 160,
                "ry": 8 + (i * 43 % 31) * h / 140,
                "amp": 40 + (i * 7 % 11) * 6,
            }
        )
    return objects


def synthetic_low_res(objects, point, k, crop_box, crop_h, crop_w):
    """(3, 256, 256) float32 logits for the k-th prompt, at image point `point`, in a crop."""
    x0, y0 = crop_box[0], crop_box[1]
    in_h, in_w = ResizeLongestSide.get_preprocess_shape(crop_h, crop_w, 1024)
    u = np.arange(256, dtype=np.float64)
    # Image coordinates of the low-res samples: low-res → 1024 frame → crop pixels → image.
    xs = (u + 0.5) * 4 * (crop_w / in_w) + x0
    ys = (u + 0.5) * 4 * (crop_h / in_h) + y0
    X = xs[None, :]
    Y = ys[:, None]
    dist = [(point[0] - o["cx"]) * (point[0] - o["cx"]) + (point[1] - o["cy"]) * (point[1] - o["cy"]) for o in objects]
    order = sorted(range(len(objects)), key=lambda i: (dist[i], i))
    first, second = objects[order[0]], objects[order[1]]

    def blob(o, shrink):
        dx = (X - o["cx"]) / o["rx"]
        dy = (Y - o["cy"]) / o["ry"]
        return o["amp"] * (1 - (dx * dx + dy * dy) * shrink)

    def satellite(o):
        # A small blob beside the object (an island once thresholded) ...
        dx = (X - (o["cx"] + o["rx"] * 1.6)) / 3.5
        dy = (Y - o["cy"]) / 3.5
        return 6 * (1 - (dx * dx + dy * dy))

    def hole(o):
        # ... and a small dip inside it (a hole).
        dx = (X - (o["cx"] - o["rx"] * 0.4)) / 3.0
        dy = (Y - o["cy"]) / 3.0
        return 40 * ((dx * dx + dy * dy) - 1)

    ripple = ((u[None, :] * 7 + u[:, None] * 13 + k) % 5 - 2) * 0.35
    main = np.minimum(np.maximum(blob(first, 1.0), satellite(first)), hole(first))
    out = np.stack(
        [
            main + ripple,
            np.maximum(main, blob(second, 1.0)) + ripple,
            blob(first, 1.5) + ripple,
        ]
    )
    return out.astype(np.float32)


def synthetic_iou(k, m):
    return 0.8 + ((k * 37 + m * 11) % 23) / 100


def amg_case(case):
    h, w, s = case["h"], case["w"], case["settings"]
    objects = synthetic_scene(h, w, s["objects"])
    model = SimpleNamespace(
        image_encoder=SimpleNamespace(img_size=1024), mask_threshold=0.0, device=torch.device("cpu")
    )
    gen = SamAutomaticMaskGenerator(
        model,
        points_per_side=s["points_per_side"],
        pred_iou_thresh=s["pred_iou_thresh"],
        stability_score_thresh=s["stability_score_thresh"],
        box_nms_thresh=s["box_nms_thresh"],
        crop_n_layers=s["crop_n_layers"],
        crop_nms_thresh=s["crop_nms_thresh"],
        crop_n_points_downscale_factor=s["crop_n_points_downscale_factor"],
        min_mask_region_area=s["min_mask_region_area"],
        output_mode="coco_rle",
    )
    boxes, layers = amg.generate_crop_boxes((h, w), s["crop_n_layers"], 512 / 1500)
    # The image-frame prompt points in the order the generator visits them.
    points = []
    for box, layer in zip(boxes, layers):
        cw, ch = box[2] - box[0], box[3] - box[1]
        for p in gen.point_grids[layer] * np.array([[cw, ch]]):
            points.append((p[0] + box[0], p[1] + box[1], box, ch, cw))
    state = {"k": 0}

    def set_image(image):
        gen.predictor.original_size = image.shape[:2]
        gen.predictor.is_image_set = True

    def predict_torch(point_coords, point_labels, multimask_output=True, return_logits=False):
        low, ious = [], []
        for _ in range(point_coords.shape[0]):
            k = state["k"]
            px, py, box, ch, cw = points[k]
            low.append(synthetic_low_res(objects, (px, py), k, box, ch, cw))
            ious.append([synthetic_iou(k, m) for m in range(3)])
            state["k"] += 1
        low = torch.from_numpy(np.stack(low))
        crop_h, crop_w = gen.predictor.original_size
        masks = postprocess_masks(low, crop_h, crop_w)
        return masks, torch.tensor(ious, dtype=torch.float32), low

    gen.predictor.set_image = set_image
    gen.predictor.predict_torch = predict_torch
    with torch.no_grad():
        records = gen.generate(np.zeros((h, w, 3), dtype=np.uint8))
    assert state["k"] == len(points)
    return records


HANDLERS = {
    "point_grids": point_grids,
    "crop_boxes": crop_boxes,
    "upsample": upsample,
    "stability": stability,
    "mask_to_box": mask_to_box,
    "near_edge": near_edge,
    "nms": run_nms,
    "small_regions": small_regions,
    "uncrop_rle": uncrop_rle,
    "amg": amg_case,
}


def main():
    request = json.load(sys.stdin)
    answer = {key: [HANDLERS[key](case) for case in cases] for key, cases in request.items()}
    answer["torch"] = {
        "threads": torch.get_num_threads(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "version": torch.__version__,
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
