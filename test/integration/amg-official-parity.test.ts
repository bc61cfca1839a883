// lib/amg/*.ts against the official segment-anything code (test/python/amg_oracle.py): point
// grids, crop boxes, mask upsampling (Sam.postprocess_masks), stability score, mask boxes, the
// crop-edge test, torchvision's NMS, remove_small_regions, uncropped RLEs, and finally the whole
// SamAutomaticMaskGenerator on a synthetic model whose logits both sides compute identically.
//
// Python: $SAE_PYTHON, else trainer/.venv/bin/python (torch, torchvision, segment-anything,
// opencv-python-headless, pycocotools; installed by infra/install-python.sh).
import { beforeAll, describe, expect, it } from 'vitest';
import { generateCropBoxes, uncropMaskToRle } from '../../lib/amg/crop-boxes.ts';
import {
  isBoxNearCropEdge,
  maskBox,
  maskCandidatesFromBatch,
  stabilityFromCounts,
  stabilityScore,
} from '../../lib/amg/mask-filters.ts';
import { planMaskUpsample, upsampleAndBinarize, upsampleMaskLogits } from '../../lib/amg/mask-upsample.ts';
import { batchedNms, nms, nmsWithinCrop } from '../../lib/amg/nms.ts';
import { buildAllLayerPointGrids, scalePointGrid } from '../../lib/amg/point-grids.ts';
import { finishMasks, removeSmallRegions } from '../../lib/amg/postprocess.ts';
import { maskRecord, type AmgRecord } from '../../lib/amg/records.ts';
import type { AmgOptions, Box, MaskCandidate, MaskGrid } from '../../lib/amg/types.ts';
import { getPreprocessShape } from '../../lib/sam/resize-longest-side.ts';
import { encodeMask } from '../../lib/rle.ts';
import { askOracle as runOracle, requireProjectPython } from '../helpers/python-oracle.ts';
import { prng } from '../helpers/random.ts';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const rand = prng(20250301);
const randInt = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const b64 = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const fromB64F32 = (s: string) => {
  const buf = Buffer.from(s, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
};

function transposeToColumnMajor<T extends Float32Array | Uint8Array>(data: T, h: number, w: number): T {
  const out = new (data.constructor as new (n: number) => T)(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[x * h + y] = data[y * w + x]!;
  return out;
}

/** Random row-major 0/1 mask: ellipses and rectangles with some holes and specks, or noise. */
function randomMask(h: number, w: number): Uint8Array {
  const m = new Uint8Array(h * w);
  const kind = rand();
  if (kind < 0.15) return m.map(() => (rand() < 0.4 ? 1 : 0));
  const shapes = Array.from({ length: randInt(1, 5) }, () => ({
    on: rand() < 0.75,
    cx: rand() * w,
    cy: rand() * h,
    rx: 0.5 + rand() * w * 0.35,
    ry: 0.5 + rand() * h * 0.35,
    ellipse: rand() < 0.6,
  }));
  for (const s of shapes) {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const dx = (x + 0.5 - s.cx) / s.rx;
        const dy = (y + 0.5 - s.cy) / s.ry;
        if (s.ellipse ? dx * dx + dy * dy <= 1 : Math.abs(dx) <= 1 && Math.abs(dy) <= 1)
          m[y * w + x] = s.on ? 1 : 0;
      }
    }
  }
  // Specks: single pixels and tiny clusters flipped (islands and holes of 1–4 px).
  const specks = randInt(0, Math.ceil((h * w) / 150));
  for (let i = 0; i < specks; i++) {
    const x = randInt(0, w - 1);
    const y = randInt(0, h - 1);
    const v = rand() < 0.5 ? 1 : 0;
    m[y * w + x] = v;
    if (rand() < 0.3 && x + 1 < w) m[y * w + x + 1] = v;
  }
  return m;
}

/** A mask of many equal-sized small islands in a random order of positions: ties for "largest". */
function tiedIslands(h: number, w: number, size: 1 | 2): Uint8Array {
  const m = new Uint8Array(h * w);
  for (let y = rand() < 0.5 ? 0 : 1; y + size <= h; y += size + 1 + randInt(0, 2)) {
    for (let x = randInt(0, 2); x + size <= w; x += size + 1 + randInt(0, 3)) {
      if (rand() < 0.5) continue;
      for (let dy = 0; dy < size; dy++) for (let dx = 0; dx < size; dx++) m[(y + dy) * w + x + dx] = 1;
    }
  }
  return m;
}

/** 256×256 low-res logits: smooth blobs, with noise of some amplitude (many sign changes). */
function randomLowRes(noise: number): Float32Array {
  const out = new Float32Array(256 * 256);
  const blobs = Array.from({ length: randInt(1, 4) }, () => ({
    cx: rand() * 256,
    cy: rand() * 256,
    r: 10 + rand() * 90,
    amp: 4 + rand() * 20,
  }));
  for (let y = 0; y < 256; y++) {
    for (let x = 0; x < 256; x++) {
      let v = -6;
      for (const b of blobs) v = Math.max(v, b.amp * (1 - ((x - b.cx) ** 2 + (y - b.cy) ** 2) / b.r ** 2));
      out[y * 256 + x] = v + (rand() - 0.5) * noise;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The synthetic model of the end-to-end case: a TypeScript twin of synthetic_low_res in
// amg_oracle.py, same float64 operations in the same order, then rounded to float32.
// ---------------------------------------------------------------------------------------------

interface SceneObject {
  cx: number;
  cy: number;
  rx: number;
  ry: number;
  amp: number;
}

function syntheticScene(h: number, w: number, n: number): SceneObject[] {
  return Array.from({ length: n }, (_, i) => ({
    cx: (((i * 97 + 13) % 89) / 89) * w,
    cy: (((i * 61 + 7) % 83) / 83) * h,
    rx: 8 + (((i * 29) % 37) * w) / 160,
    ry: 8 + (((i * 43) % 31) * h) / 140,
    amp: 40 + ((i * 7) % 11) * 6,
  }));
}

function syntheticLowRes(
  objects: SceneObject[],
  px: number,
  py: number,
  k: number,
  cropBox: Box,
): Float32Array {
  const [x0, y0, x1, y1] = cropBox;
  const cw = x1 - x0;
  const ch = y1 - y0;
  const [inH, inW] = getPreprocessShape(ch, cw, 1024);
  const xs = Float64Array.from({ length: 256 }, (_, u) => (u + 0.5) * 4 * (cw / inW) + x0);
  const ys = Float64Array.from({ length: 256 }, (_, u) => (u + 0.5) * 4 * (ch / inH) + y0);
  const dist = objects.map((o) => (px - o.cx) * (px - o.cx) + (py - o.cy) * (py - o.cy));
  const order = objects.map((_, i) => i).sort((a, b) => dist[a]! - dist[b]! || a - b);
  const first = objects[order[0]!]!;
  const second = objects[order[1]!]!;
  const blob = (o: SceneObject, X: number, Y: number, shrink: number) => {
    const dx = (X - o.cx) / o.rx;
    const dy = (Y - o.cy) / o.ry;
    return o.amp * (1 - (dx * dx + dy * dy) * shrink);
  };
  const satellite = (o: SceneObject, X: number, Y: number) => {
    const dx = (X - (o.cx + o.rx * 1.6)) / 3.5;
    const dy = (Y - o.cy) / 3.5;
    return 6 * (1 - (dx * dx + dy * dy));
  };
  const hole = (o: SceneObject, X: number, Y: number) => {
    const dx = (X - (o.cx - o.rx * 0.4)) / 3.0;
    const dy = (Y - o.cy) / 3.0;
    return 40 * (dx * dx + dy * dy - 1);
  };
  const out = new Float32Array(3 * 256 * 256);
  for (let v = 0; v < 256; v++) {
    for (let u = 0; u < 256; u++) {
      const X = xs[u]!;
      const Y = ys[v]!;
      const ripple = (((u * 7 + v * 13 + k) % 5) - 2) * 0.35;
      const main = Math.min(Math.max(blob(first, X, Y, 1.0), satellite(first, X, Y)), hole(first, X, Y));
      const p = v * 256 + u;
      out[p] = main + ripple;
      out[65536 + p] = Math.max(main, blob(second, X, Y, 1.0)) + ripple;
      out[2 * 65536 + p] = blob(first, X, Y, 1.5) + ripple;
    }
  }
  return out;
}

const syntheticIou = (k: number, m: number) => Math.fround(0.8 + ((k * 37 + m * 11) % 23) / 100);

interface AmgSettings {
  objects: number;
  points_per_side: number;
  pred_iou_thresh: number;
  stability_score_thresh: number;
  box_nms_thresh: number;
  crop_n_layers: number;
  crop_nms_thresh: number;
  crop_n_points_downscale_factor: number;
  min_mask_region_area: number;
}

/** Our pipeline on the synthetic model, one decoder batch per point as the ONNX decoder runs. */
function ourAmg(h: number, w: number, s: AmgSettings): AmgRecord[] {
  const objects = syntheticScene(h, w, s.objects);
  const options: Partial<AmgOptions> = {
    predIouThresh: s.pred_iou_thresh,
    stabilityScoreThresh: s.stability_score_thresh,
    boxNmsThresh: s.box_nms_thresh,
    cropNmsThresh: s.crop_nms_thresh,
    minMaskRegionArea: s.min_mask_region_area,
  };
  const grids = buildAllLayerPointGrids(s.points_per_side, s.crop_n_layers, s.crop_n_points_downscale_factor);
  const { cropBoxes, layerIdxs } = generateCropBoxes(h, w, s.crop_n_layers, 512 / 1500);
  let k = 0;
  const perCrop: MaskCandidate[][] = cropBoxes.map((cropBox, c) => {
    const [x0, y0, x1, y1] = cropBox;
    const plan = planMaskUpsample(y1 - y0, x1 - x0);
    const points = scalePointGrid(grids[layerIdxs[c]!]!, x1 - x0, y1 - y0);
    const masks: MaskCandidate[] = [];
    for (let i = 0; i < points.length / 2; i++, k++) {
      const point = points.subarray(2 * i, 2 * i + 2);
      const batch = {
        count: 1,
        iou: Float32Array.from([0, 1, 2], (m) => syntheticIou(k, m)),
        lowRes: syntheticLowRes(objects, point[0]! + x0, point[1]! + y0, k, cropBox),
      };
      masks.push(...maskCandidatesFromBatch(batch, point, { cropBox, imageSize: [h, w], plan }, options));
    }
    return nmsWithinCrop(masks, s.box_nms_thresh);
  });
  return finishMasks(perCrop, options).map(maskRecord);
}

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

const UPSAMPLE_SIZES: [number, number, number][] = [
  // [h, w, masks]: SA-1B-sized crops, the layer-1/2 crops of a 1500×2250 image, a crop already at
  // 1024 (stage 2 is a copy), upsampling and downsampling, and very thin crops.
  [1500, 2250, 1],
  [1006, 1381, 2],
  [567, 755, 2],
  [683, 1024, 3],
  [1024, 1024, 2],
  [777, 1333, 2],
  [100, 37, 3],
  [2000, 10, 2],
  [1, 5, 2],
];

const AMG_CASES: { h: number; w: number; settings: AmgSettings }[] = [
  // One layer of crops (5 crops), small-region postprocessing on.
  {
    h: 240,
    w: 360,
    settings: {
      objects: 9,
      points_per_side: 8,
      pred_iou_thresh: 0.88,
      stability_score_thresh: 0.95,
      box_nms_thresh: 0.7,
      crop_n_layers: 1,
      crop_nms_thresh: 0.7,
      crop_n_points_downscale_factor: 2,
      min_mask_region_area: 60,
    },
  },
  // Two layers (21 crops, some yielding nothing), other thresholds, a portrait image.
  {
    h: 330,
    w: 210,
    settings: {
      objects: 12,
      points_per_side: 4,
      pred_iou_thresh: 0.85,
      stability_score_thresh: 0.9,
      box_nms_thresh: 0.6,
      crop_n_layers: 2,
      crop_nms_thresh: 0.5,
      crop_n_points_downscale_factor: 2,
      min_mask_region_area: 25,
    },
  },
  // The released defaults: one crop, no postprocessing.
  {
    h: 200,
    w: 300,
    settings: {
      objects: 7,
      points_per_side: 8,
      pred_iou_thresh: 0.88,
      stability_score_thresh: 0.95,
      box_nms_thresh: 0.7,
      crop_n_layers: 0,
      crop_nms_thresh: 0.7,
      crop_n_points_downscale_factor: 1,
      min_mask_region_area: 0,
    },
  },
];

interface Cases {
  pointGrids: { n: number; layers: number; factor: number }[];
  cropBoxes: { h: number; w: number; layers: number; ratio: number }[];
  upsample: { h: number; w: number; low: Float32Array }[];
  stability: { n: number; h: number; w: number; logits: Float32Array; offset: number }[];
  maskToBox: { n: number; h: number; w: number; data: Uint8Array }[];
  nearEdge: { boxes: Box[]; crop_box: Box; orig_box: Box }[];
  nms: { boxes: Box[]; scores: number[]; thresh: number }[];
  smallRegions: { h: number; w: number; data: Uint8Array; thresh: number; mode: 'holes' | 'islands' }[];
  uncrop: { h: number; w: number; data: Uint8Array; crop_box: Box; H: number; W: number }[];
}

function buildCases(): Cases {
  const pointGrids = [
    { n: 32, layers: 3, factor: 2 },
    { n: 32, layers: 2, factor: 3 },
    { n: 24, layers: 1, factor: 1 },
    { n: 17, layers: 4, factor: 2 },
    { n: 1, layers: 0, factor: 1 },
    { n: 64, layers: 0, factor: 1 },
  ];
  const cropBoxes = [
    { h: 1500, w: 2250, layers: 1, ratio: 512 / 1500 },
    { h: 1500, w: 2250, layers: 3, ratio: 512 / 1500 },
    { h: 2250, w: 1500, layers: 2, ratio: 512 / 1500 },
    { h: 1024, w: 683, layers: 2, ratio: 0.25 },
    { h: 3300, w: 4950, layers: 2, ratio: 512 / 1500 },
    ...Array.from({ length: 20 }, () => ({
      h: randInt(1, 5000),
      w: randInt(1, 5000),
      layers: randInt(0, 3),
      ratio: rand() * 0.6,
    })),
  ];

  const upsample = UPSAMPLE_SIZES.map(([h, w, n]) => {
    const low = new Float32Array(n * 65536);
    for (let m = 0; m < n; m++) low.set(randomLowRes(m === 0 ? 1 : 12), m * 65536);
    return { h, w, low };
  });

  // Logits at and around the thresholds ±1 and 0, so every comparison is exercised.
  const special = [
    1,
    -1,
    0,
    Math.fround(1 + 2 ** -23),
    Math.fround(1 - 2 ** -24),
    -Math.fround(1 - 2 ** -24),
  ];
  const stability = Array.from({ length: 6 }, (_, c) => {
    const [n, h, w] = [8, randInt(1, 40), randInt(1, 40)];
    const logits = new Float32Array(n * h * w).map(() =>
      rand() < 0.5 ? special[randInt(0, special.length - 1)]! : (rand() - 0.5) * 6,
    );
    if (c === 0) logits.subarray(0, h * w).fill(-1); // nothing above −1: NaN
    return { n, h, w, logits, offset: c === 5 ? 0.5 : 1 };
  });

  const maskToBox = (
    [
      [1, 1],
      [1, 9],
      [7, 1],
      [13, 17],
      [64, 48],
      [150, 220],
    ] as const
  ).map(([h, w]) => {
    const n = 12;
    const data = new Uint8Array(n * h * w);
    for (let k = 0; k < n; k++) {
      // An empty mask, a full one, then random ones.
      const m = k === 0 ? new Uint8Array(h * w) : k === 1 ? new Uint8Array(h * w).fill(1) : randomMask(h, w);
      data.set(m, k * h * w);
    }
    return { n, h, w, data };
  });

  const nearEdge = Array.from({ length: 30 }, () => {
    const W = randInt(50, 3000);
    const H = randInt(50, 3000);
    const cx0 = rand() < 0.3 ? 0 : randInt(0, W - 20);
    const cy0 = rand() < 0.3 ? 0 : randInt(0, H - 20);
    const crop: Box = [
      cx0,
      cy0,
      rand() < 0.3 ? W : randInt(cx0 + 10, W),
      rand() < 0.3 ? H : randInt(cy0 + 10, H),
    ];
    const cw = crop[2] - crop[0];
    const ch = crop[3] - crop[1];
    // Boxes in the crop frame, many exactly 19–21 px from an edge.
    const near = (size: number) =>
      rand() < 0.5 ? randInt(18, 22) : rand() < 0.5 ? size - randInt(18, 23) : randInt(0, size);
    const boxes = Array.from({ length: 40 }, (): Box => {
      const a = Math.max(0, Math.min(cw - 1, near(cw)));
      const b = Math.max(0, Math.min(ch - 1, near(ch)));
      return [a, b, Math.min(cw - 1, a + randInt(0, cw)), Math.min(ch - 1, b + randInt(0, ch))];
    });
    boxes.push([0, 0, 0, 0]); // an empty mask's box
    return { boxes, crop_box: crop, orig_box: [0, 0, W, H] as Box };
  });

  const randomBoxes = (n: number, size: number): Box[] =>
    Array.from({ length: n }, () => {
      const x0 = randInt(0, size);
      const y0 = randInt(0, size);
      return [x0, y0, x0 + randInt(0, size / 4), y0 + randInt(0, size / 4)];
    });
  const nmsCases: Cases['nms'] = [];
  for (const n of [0, 1, 7, 60, 400, 999, 1000, 1001, 1500, 2600]) {
    for (const tieLevels of [0, 2, 5]) {
      const boxes = randomBoxes(n, n < 100 ? 60 : 400);
      if (n > 3) boxes[3] = [0, 0, 0, 0]; // zero area: IoU 0/0 suppresses nothing
      if (n > 5) boxes[5] = [...boxes[4]!]; // an exact duplicate
      const scores = boxes.map(() =>
        tieLevels ? randInt(0, tieLevels - 1) / tieLevels : Math.fround(rand()),
      );
      nmsCases.push({ boxes, scores, thresh: [0.7, 0.5, 0.3][randInt(0, 2)]! });
    }
  }

  const smallRegions: Cases['smallRegions'] = [];
  for (const [h, w] of [
    [1, 1],
    [1, 12],
    [12, 1],
    [2, 2],
    [5, 7],
    [31, 29],
    [64, 96],
    [120, 80],
  ] as const) {
    for (let i = 0; i < 6; i++) {
      const data =
        i === 0
          ? new Uint8Array(h * w)
          : i === 1
            ? new Uint8Array(h * w).fill(1)
            : i === 2
              ? tiedIslands(h, w, rand() < 0.5 ? 1 : 2)
              : randomMask(h, w);
      for (const mode of ['holes', 'islands'] as const) {
        smallRegions.push({ h, w, data, thresh: [1, 2, 5, 9, 30, 100][randInt(0, 5)]!, mode });
      }
    }
  }
  // OpenCV's parallel labelling kicks in on taller images: a few larger ones with ties.
  for (const [h, w] of [
    [300, 200],
    [301, 157],
  ] as const) {
    const data = tiedIslands(h, w, 2);
    smallRegions.push({ h, w, data, thresh: 10, mode: 'islands' });
    smallRegions.push({ h, w, data: randomMask(h, w), thresh: 50, mode: 'holes' });
  }

  const uncrop = Array.from({ length: 12 }, () => {
    const W = randInt(1, 90);
    const H = randInt(1, 90);
    const x0 = randInt(0, W - 1);
    const y0 = randInt(0, H - 1);
    const x1 = randInt(x0 + 1, W);
    const y1 = randInt(y0 + 1, H);
    return {
      h: y1 - y0,
      w: x1 - x0,
      data: randomMask(y1 - y0, x1 - x0),
      crop_box: [x0, y0, x1, y1] as Box,
      H,
      W,
    };
  });

  return {
    pointGrids,
    cropBoxes,
    upsample,
    stability,
    maskToBox,
    nearEdge,
    nms: nmsCases,
    smallRegions,
    uncrop,
  };
}

interface Answer {
  point_grids: number[][][][];
  crop_boxes: { boxes: Box[]; layers: number[] }[];
  upsample: { logits: string }[];
  stability: (number | null)[][];
  mask_to_box: Box[][];
  near_edge: boolean[][];
  nms: { nms: number[]; batched: number[] }[];
  small_regions: { counts: number[]; changed: boolean }[];
  uncrop_rle: number[][];
  amg: AmgRecord[][];
  torch: { threads: number; capability: string; version: string };
}

function askOracle(c: Cases): Answer {
  const request = {
    point_grids: c.pointGrids,
    crop_boxes: c.cropBoxes,
    upsample: c.upsample.map((u) => ({ h: u.h, w: u.w, low: b64(u.low) })),
    stability: c.stability.map((s) => ({ ...s, logits: b64(s.logits) })),
    mask_to_box: c.maskToBox.map((m) => ({ ...m, data: b64(m.data) })),
    near_edge: c.nearEdge,
    nms: c.nms,
    small_regions: c.smallRegions.map((s) => ({ ...s, data: b64(s.data) })),
    uncrop_rle: c.uncrop.map((u) => ({ ...u, data: b64(u.data) })),
    amg: AMG_CASES,
  };
  return runOracle<Answer>('amg_oracle.py', request);
}

// ---------------------------------------------------------------------------------------------

describe('lib/amg agrees with the official segment-anything code', () => {
  let cases: Cases;
  let answer: Answer;

  beforeAll(() => {
    requireProjectPython('torch, torchvision, segment-anything, opencv-python-headless, pycocotools');
    cases = buildCases();
    answer = askOracle(cases);
  });

  it('point grids: build_all_layer_point_grids, bit for bit', () => {
    cases.pointGrids.forEach((c, i) => {
      const ours = buildAllLayerPointGrids(c.n, c.layers, c.factor).map((g) =>
        Array.from({ length: g.length / 2 }, (_, p) => [g[2 * p]!, g[2 * p + 1]!]),
      );
      expect(ours, JSON.stringify(c)).toEqual(answer.point_grids[i]);
    });
  });

  it('crop boxes: generate_crop_boxes', () => {
    cases.cropBoxes.forEach((c, i) => {
      const ours = generateCropBoxes(c.h, c.w, c.layers, c.ratio);
      expect({ boxes: ours.cropBoxes, layers: ours.layerIdxs }, JSON.stringify(c)).toEqual(
        answer.crop_boxes[i],
      );
    });
  });

  it('mask upsampling: Sam.postprocess_masks, bit for bit, both layouts and the fused binarisation', () => {
    // Bit-exact where torch runs its generic kernel with FMA (x86 AVX2 / AVX-512, > 1 thread).
    const exact = ['AVX2', 'AVX512'].includes(answer.torch.capability);
    const report: string[] = [];
    cases.upsample.forEach((c, i) => {
      const ref = fromB64F32(answer.upsample[i]!.logits);
      const n = c.low.length / 65536;
      const plan = planMaskUpsample(c.h, c.w);
      const hw = c.h * c.w;
      let maxDiff = 0;
      let differing = 0;
      let flips = 0;
      for (let m = 0; m < n; m++) {
        const low = c.low.subarray(m * 65536, (m + 1) * 65536);
        const torchLogits = ref.subarray(m * hw, (m + 1) * hw);
        const rowMajor = upsampleMaskLogits(low, plan, 'row-major').data;
        const colMajor = upsampleMaskLogits(low, plan, 'column-major').data;
        const fused = upsampleAndBinarize(low, plan);
        let high = 0;
        let lowCount = 0;
        for (let p = 0; p < hw; p++) {
          const t = torchLogits[p]!;
          const r = rowMajor[p]!;
          if (r !== t) {
            differing++;
            maxDiff = Math.max(maxDiff, Math.abs(r - t));
          }
          if (r > 0 !== t > 0) flips++;
          if (fused.mask.data[p] !== (t > 0 ? 1 : 0)) flips++;
          if (t > 1) high++;
          if (t > -1) lowCount++;
        }
        let layoutMismatches = 0;
        for (let y = 0; y < c.h; y++) {
          for (let x = 0; x < c.w; x++)
            if (colMajor[x * c.h + y] !== rowMajor[y * c.w + x]) layoutMismatches++;
        }
        expect(layoutMismatches, 'column-major vs row-major').toBe(0);
        expect([fused.intersections, fused.unions]).toEqual([high, lowCount]);
      }
      report.push(
        `${c.h}×${c.w}: ${differing} of ${n * hw} logits differ (max ${maxDiff}), ${flips} mask pixels`,
      );
      expect(flips, `${c.h}×${c.w}`).toBe(0);
      if (exact) expect(differing, `${c.h}×${c.w}: max |Δ| ${maxDiff}`).toBe(0);
      else expect(maxDiff).toBeLessThan(1e-4);
    });
    console.log(
      `[amg parity] upsampling vs torch ${answer.torch.version} (${answer.torch.capability}, ${answer.torch.threads} threads):\n  ${report.join('\n  ')}`,
    );
  });

  it('stability score: calculate_stability_score (float32, NaN for 0/0)', () => {
    cases.stability.forEach((c, i) => {
      const ours = Array.from({ length: c.n }, (_, m) => {
        const s = stabilityScore(c.logits.subarray(m * c.h * c.w, (m + 1) * c.h * c.w), c.offset);
        return Number.isNaN(s) ? null : s;
      });
      expect(ours).toEqual(answer.stability[i]);
    });
    expect(stabilityFromCounts(0, 0)).toBeNaN();
  });

  it('mask boxes: batched_mask_to_box (inclusive, empty → 0s), row- and column-major', () => {
    cases.maskToBox.forEach((c, i) => {
      const hw = c.h * c.w;
      const ours = Array.from({ length: c.n }, (_, m) => {
        const data = c.data.subarray(m * hw, (m + 1) * hw);
        const row = maskBox({ data, h: c.h, w: c.w, order: 'row-major' });
        const col = maskBox({
          data: transposeToColumnMajor(data, c.h, c.w),
          h: c.h,
          w: c.w,
          order: 'column-major',
        });
        expect(col).toEqual(row);
        return row;
      });
      expect(ours, `${c.h}×${c.w}`).toEqual(answer.mask_to_box[i]);
    });
  });

  it('crop-edge filter: is_box_near_crop_edge', () => {
    cases.nearEdge.forEach((c, i) => {
      expect(c.boxes.map((b) => isBoxNearCropEdge(b, c.crop_box, c.orig_box))).toEqual(answer.near_edge[i]);
    });
  });

  it('NMS: torchvision nms and batched_nms (incl. the > 1000-box re-sort), exact index lists', () => {
    cases.nms.forEach((c, i) => {
      const label = `${c.boxes.length} boxes, thresh ${c.thresh}`;
      expect(nms(c.boxes, c.scores, c.thresh), label).toEqual(answer.nms[i]!.nms);
      expect(batchedNms(c.boxes, c.scores, c.thresh), label).toEqual(answer.nms[i]!.batched);
    });
  });

  it('small regions: remove_small_regions (cv2 8-connectivity), holes and islands', () => {
    let changed = 0;
    cases.smallRegions.forEach((c, i) => {
      const rle = encodeMask(c.data, c.h, c.w);
      const ours = removeSmallRegions(rle, c.thresh, c.mode);
      const label = `${c.h}×${c.w} ${c.mode} < ${c.thresh} (case ${i})`;
      expect(ours.rle.counts, label).toEqual(answer.small_regions[i]!.counts);
      expect(ours.changed, label).toBe(answer.small_regions[i]!.changed);
      if (ours.changed) changed++;
    });
    expect(changed).toBeGreaterThan(cases.smallRegions.length / 3); // the cases do exercise it
  });

  it('uncropped RLE: uncrop_masks + mask_to_rle_pytorch', () => {
    cases.uncrop.forEach((c, i) => {
      const grid: MaskGrid<Uint8Array> = { data: c.data, h: c.h, w: c.w, order: 'row-major' };
      expect(uncropMaskToRle(grid, c.crop_box, c.H, c.W).counts).toEqual(answer.uncrop_rle[i]);
      const col = { ...grid, data: transposeToColumnMajor(c.data, c.h, c.w), order: 'column-major' as const };
      expect(uncropMaskToRle(col, c.crop_box, c.H, c.W).counts).toEqual(answer.uncrop_rle[i]);
    });
  });

  it('the whole AMG (SamAutomaticMaskGenerator.generate, coco_rle) on a synthetic model: identical records', () => {
    const summary: string[] = [];
    AMG_CASES.forEach((c, i) => {
      const ours = ourAmg(c.h, c.w, c.settings);
      const theirs = answer.amg[i]!;
      expect(theirs.length, 'the case should produce masks').toBeGreaterThan(3);
      expect(ours).toEqual(theirs);
      summary.push(
        `${c.h}×${c.w}, ${c.settings.crop_n_layers} crop layers, min area ${c.settings.min_mask_region_area}: ${theirs.length} records`,
      );
    });
    console.log(`[amg parity] end to end:\n  ${summary.join('\n  ')}`);
  });
});
