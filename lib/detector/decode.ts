// From the detector's two output maps to boxes on the image: the same procedure as the trainer's
// `decode` (trainer/sae_trainer/detector.py), which its COCO figures were measured with.
//   1. a cell is a peak when its score is no lower than any of its 8 neighbours and at least the
//      score threshold;
//   2. peaks by descending score (ties in row-major order), at most 4 × maxDetections;
//   3. boxes from the model frame to the image (÷ scale), clipped to it; a box under one pixel
//      wide or high is dropped;
//   4. torchvision's NMS, then the first maxDetections.
import type { Box } from '../amg/types.ts';
import { nms } from '../amg/nms.ts';

export interface DecodeSettings {
  scoreThreshold: number;
  nmsIou: number;
  maxDetections: number;
}

export interface Detection {
  /** x0 y0 x1 y1 in pixels of the original image. */
  box: Box;
  score: number;
}

export interface DetectorMaps {
  /** grid × grid centre scores in [0, 1], row-major. */
  scores: Float32Array;
  /** 4 × grid × grid: x0, y0, x1, y1 planes in pixels of the model frame. */
  boxes: Float32Array;
  grid: number;
}

/** Model-frame pixels per original pixel: the resize-longest-side factor. */
export function frameScale(imageSize: number, [h, w]: readonly [number, number]): number {
  return imageSize / Math.max(h, w);
}

export function decodeDetections(
  maps: DetectorMaps,
  scale: number,
  [h, w]: readonly [number, number],
  settings: DecodeSettings,
): Detection[] {
  const peaks = peakCells(maps, settings.scoreThreshold)
    .sort((a, b) => maps.scores[b]! - maps.scores[a]! || a - b)
    .slice(0, 4 * settings.maxDetections);
  const area = maps.grid * maps.grid;
  const found: Detection[] = [];
  for (const cell of peaks) {
    const corner = (k: number) => maps.boxes[k * area + cell]! / scale;
    const box: Box = [
      clamp(corner(0), 0, w),
      clamp(corner(1), 0, h),
      clamp(corner(2), 0, w),
      clamp(corner(3), 0, h),
    ];
    if (box[2] - box[0] >= 1 && box[3] - box[1] >= 1) found.push({ box, score: maps.scores[cell]! });
  }
  const keep = nms(
    found.map((d) => d.box),
    found.map((d) => d.score),
    settings.nmsIou,
  );
  return keep.slice(0, settings.maxDetections).map((i) => found[i]!);
}

/** Cells no lower than their 8 neighbours and at least `threshold`, in row-major order. */
function peakCells({ scores, grid }: DetectorMaps, threshold: number): number[] {
  const peaks: number[] = [];
  for (let i = 0; i < grid; i++) {
    for (let j = 0; j < grid; j++) {
      const s = scores[i * grid + j]!;
      if (s >= threshold && isLocalMax(scores, grid, i, j, s)) peaks.push(i * grid + j);
    }
  }
  return peaks;
}

function isLocalMax(scores: Float32Array, grid: number, i: number, j: number, s: number): boolean {
  for (let di = -1; di <= 1; di++) {
    for (let dj = -1; dj <= 1; dj++) {
      const y = i + di;
      const x = j + dj;
      if (y >= 0 && y < grid && x >= 0 && x < grid && scores[y * grid + x]! > s) return false;
    }
  }
  return true;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
