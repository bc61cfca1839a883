// COCO polygon segmentations → RLE, pixel for pixel as pycocotools does it (`frPyObjects`, which
// calls `rleFrPoly` in maskApi.c, then `merge` for objects made of several polygons).
//
// The algorithm, so the integer details below make sense:
// 1. Scale the vertices by 5 and round (C's (int)(v + .5): truncation toward zero) to walk the
//    outline on a 5× finer grid, one point per fine step, like a Bresenham line.
// 2. Keep the points where the outline crosses a pixel column centre; for each, the first pixel
//    row whose centre lies at or below the outline. These are the boundaries of the vertical runs.
// 3. Sort those column-major positions: their differences are the RLE counts (zero runs merged).
// The result is not a strict "pixel centre inside the polygon" rasterisation, which is exactly
// why we copy it: COCO's own areas and IoUs were computed this way.
import { rleMerge, type Rle } from '../rle.ts';

const SCALE = 5;

/**
 * One object's polygons (each a flat [x0, y0, x1, y1, ...] list), merged into one mask.
 * Polygons of fewer than 3 points (COCO has a few) enclose nothing and are left out; an object
 * with nothing else gives an empty mask. (pycocotools would instead read an object whose first
 * polygon has exactly 4 numbers as bounding boxes; we do not copy that quirk.)
 */
export function rleFromPolygons(polygons: readonly (readonly number[])[], h: number, w: number): Rle {
  if (polygons.length === 0) throw new Error('a polygon segmentation needs at least one polygon');
  polygons.forEach(checkCoordinates);
  const proper = polygons.filter((polygon) => polygon.length >= 6);
  if (proper.length === 0) return { size: [h, w], counts: [h * w] };
  return rleMerge(proper.map((polygon) => rleFromPolygon(polygon, h, w)));
}

/** One polygon as pycocotools `rleFrPoly` rasterises it. */
export function rleFromPolygon(xy: readonly number[], h: number, w: number): Rle {
  checkCoordinates(xy);
  if (xy.length < 6) throw new Error(`a polygon needs at least 3 (x, y) points, got ${xy.length / 2}`);
  const { u, v } = denseOutline(xy);
  const boundaries = columnBoundaries(u, v, h, w);
  return { size: [h, w], counts: countsFromBoundaries(boundaries, h * w) };
}

/** A flat list of (x, y) pairs of finite numbers. */
function checkCoordinates(xy: readonly number[]): void {
  if (xy.length % 2 !== 0)
    throw new Error(`a polygon lists (x, y) pairs, got an odd count of ${xy.length} numbers`);
  const bad = xy.find((v) => !Number.isFinite(v));
  if (bad !== undefined) throw new Error(`a polygon coordinate is not a finite number: ${bad}`);
}

/** C's (int)(x + .5) for the scaled vertices: rounds half up for positives, truncates toward 0. */
function scaled(value: number): number {
  return Math.trunc(SCALE * value + 0.5);
}

/** Step 1: every point of the closed outline on the 5× grid, edge by edge. */
function denseOutline(xy: readonly number[]): { u: number[]; v: number[] } {
  const k = xy.length / 2;
  const x = Array.from({ length: k + 1 }, (_, j) => scaled(xy[2 * (j % k)]!));
  const y = Array.from({ length: k + 1 }, (_, j) => scaled(xy[2 * (j % k) + 1]!));
  const u: number[] = [];
  const v: number[] = [];
  for (let j = 0; j < k; j++) walkEdge(x[j]!, y[j]!, x[j + 1]!, y[j + 1]!, u, v);
  return { u, v };
}

/**
 * Appends the points of one edge, always stepping along its longer axis. Edges are walked from
 * their lower end (and the points then emitted in the original direction), so an edge gives the
 * same points whichever way round the polygon goes.
 */
function walkEdge(xs: number, ys: number, xe: number, ye: number, u: number[], v: number[]): void {
  const dx = Math.abs(xe - xs);
  const dy = Math.abs(ys - ye);
  const flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
  if (flip) [xs, xe, ys, ye] = [xe, xs, ye, ys];
  if (dx >= dy) {
    const s = dx === 0 ? 0 : (ye - ys) / dx; // dx = dy = 0: a repeated vertex, one point
    for (let d = 0; d <= dx; d++) {
      const t = flip ? dx - d : d;
      u.push(t + xs);
      v.push(Math.trunc(ys + s * t + 0.5));
    }
  } else {
    const s = (xe - xs) / dy;
    for (let d = 0; d <= dy; d++) {
      const t = flip ? dy - d : d;
      v.push(t + ys);
      u.push(Math.trunc(xs + s * t + 0.5));
    }
  }
}

/** Step 2: column-major positions where a vertical run starts or ends. */
function columnBoundaries(u: number[], v: number[], h: number, w: number): number[] {
  const positions: number[] = [];
  for (let j = 1; j < u.length; j++) {
    if (u[j] === u[j - 1]) continue;
    // The fine x of this step, back in pixel coordinates; only exact column centres count.
    const xd = ((u[j]! < u[j - 1]! ? u[j]! : u[j]! - 1) + 0.5) / SCALE - 0.5;
    if (Math.floor(xd) !== xd || xd < 0 || xd > w - 1) continue;
    let yd = ((v[j]! < v[j - 1]! ? v[j]! : v[j - 1]!) + 0.5) / SCALE - 0.5;
    yd = Math.ceil(Math.min(Math.max(yd, 0), h));
    positions.push(xd * h + yd);
  }
  return positions;
}

/** Step 3: sorted boundaries → run lengths; a zero-length run joins its neighbours. */
function countsFromBoundaries(boundaries: number[], total: number): number[] {
  const a = [...boundaries, total].sort((p, q) => p - q);
  let previous = 0;
  for (let j = 0; j < a.length; j++) {
    const t = a[j]!;
    a[j] = t - previous;
    previous = t;
  }
  const counts: number[] = [a[0]!];
  let j = 1;
  while (j < a.length) {
    if (a[j]! > 0) {
      counts.push(a[j++]!);
    } else {
      j++;
      if (j < a.length) counts[counts.length - 1]! += a[j++]!;
    }
  }
  return counts;
}
