// Area and centroid of a mask, read straight from its RLE runs (lib/rle.ts) without decoding.
//
// The runs are column-major: position p is pixel (x, y) = (floor(p / h), p mod h). A run is a
// stretch of consecutive positions, so inside one column it covers consecutive rows y0..y1−1 of a
// single x. Cutting each run at column ends gives pieces whose sums are closed formulas:
//   Σx = x·n   and   Σy = y0 + … + (y1−1) = (y0 + y1 − 1)·n / 2,   with n = y1 − y0.
// The cost is one step per column a run touches, i.e. at most (runs + width) steps per mask,
// where decoding would touch every one of h·w pixels.
import type { Rle } from '../rle.ts';

/** Zeroth and first moments of a mask: its pixel count and the sums of its pixels' x and y. */
export interface MaskMoments {
  area: number;
  sumX: number;
  sumY: number;
}

/** All three are integers, exact for any real image (they stay far below 2^53). */
export function maskMoments(rle: Rle): MaskMoments {
  const h = rle.size[0];
  const moments: MaskMoments = { area: 0, sumX: 0, sumY: 0 };
  let position = 0;
  rle.counts.forEach((count, j) => {
    // Odd-indexed counts are the foreground runs (the first run is always background).
    if (j % 2 === 1) addRun(moments, h, position, count);
    position += count;
  });
  return moments;
}

/** Adds the pixels at column-major positions [start, start + length), one column piece at a time. */
function addRun(moments: MaskMoments, h: number, start: number, length: number): void {
  const end = start + length;
  let p = start;
  while (p < end) {
    const x = Math.floor(p / h);
    const y0 = p - x * h;
    const y1 = Math.min(h, y0 + (end - p)); // stop at the bottom of the column
    const n = y1 - y0;
    moments.area += n;
    moments.sumX += x * n;
    moments.sumY += ((y0 + y1 - 1) * n) / 2; // one of the two factors is even: exact
    p += n;
  }
}

/**
 * The grid cell (row, column) of a `grid`×`grid` partition of the image holding the mask's
 * centroid, or undefined for an empty mask. Pixel (x, y) covers [x, x+1)×[y, y+1), so the
 * centroid is (Σx/area + ½, Σy/area + ½) and its column is floor(grid·(Σx/area + ½) / w). That is
 * computed in integers, so a centroid exactly on a cell edge always lands in the same cell.
 */
export function centroidCell(
  moments: MaskMoments,
  width: number,
  height: number,
  grid: number,
): { row: number; column: number } | undefined {
  const { area, sumX, sumY } = moments;
  if (area === 0) return undefined;
  return {
    column: floorDiv(grid * (2 * sumX + area), 2 * area * width),
    row: floorDiv(grid * (2 * sumY + area), 2 * area * height),
  };
}

/** floor(a / b) for non-negative integers, without the rounding of a floating-point quotient. */
function floorDiv(a: number, b: number): number {
  return (a - (a % b)) / b;
}
