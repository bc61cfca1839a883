// The prompt points of the AMG (sam-spec §3 step 1): a regular n×n grid per crop layer, in
// coordinates normalised to [0, 1], then scaled to each crop's size.
//
// Points are stored flat as [x0, y0, x1, y1, ...] in a Float64Array: the official code computes
// them in float64 (numpy), and these coordinates are written into the output records.

/**
 * build_point_grid: n×n points at the pixel-centre positions (k + 0.5)/n, row-major with x
 * varying fastest: (x0, y0), (x1, y0), ..., (x0, y1), ...
 *
 * The values come from np.linspace(1/(2n), 1 − 1/(2n), n), whose float64 arithmetic
 * (start + k·step, with the last point set to stop) differs from (k + 0.5)/n in the last bit for
 * some k; we repeat that arithmetic so the coordinates match the official ones exactly.
 */
export function buildPointGrid(nPerSide: number): Float64Array {
  checkCount(nPerSide, 'points per side');
  const side = linspace(1 / (2 * nPerSide), 1 - 1 / (2 * nPerSide), nPerSide);
  const points = new Float64Array(2 * nPerSide * nPerSide);
  for (let j = 0; j < nPerSide; j++) {
    for (let i = 0; i < nPerSide; i++) {
      const p = 2 * (j * nPerSide + i);
      points[p] = side[i]!;
      points[p + 1] = side[j]!;
    }
  }
  return points;
}

/**
 * build_all_layer_point_grids: one grid per crop layer 0..nLayers, layer i having
 * int(nPerSide / scalePerLayer^i) points per side (so factor 2 gives 32, 16, 8, ...).
 */
export function buildAllLayerPointGrids(
  nPerSide: number,
  nLayers: number,
  scalePerLayer: number,
): Float64Array[] {
  checkCount(nPerSide, 'points per side');
  if (!Number.isInteger(nLayers) || nLayers < 0) throw new RangeError(`nLayers must be ≥ 0, got ${nLayers}`);
  const grids: Float64Array[] = [];
  for (let i = 0; i <= nLayers; i++) grids.push(buildPointGrid(Math.trunc(nPerSide / scalePerLayer ** i)));
  return grids;
}

/**
 * The prompts of one crop: grid × [cropW, cropH] (float64), in the crop's own pixel frame, which
 * is what the decoder is given. Add the crop's corner (`uncropPoints`) for the image frame.
 */
export function scalePointGrid(grid: Float64Array, cropW: number, cropH: number): Float64Array {
  const points = new Float64Array(grid.length);
  for (let p = 0; p < grid.length; p += 2) {
    points[p] = grid[p]! * cropW;
    points[p + 1] = grid[p + 1]! * cropH;
  }
  return points;
}

/** numpy's linspace(start, stop, num) with endpoint=True, operation for operation. */
function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const div = num - 1;
  const step = (stop - start) / div; // NaN for num = 1; numpy then uses k·delta, i.e. 0 for k = 0
  for (let k = 0; k < num; k++) out[k] = (div > 0 ? k * step : k * (stop - start)) + start;
  if (num > 1) out[num - 1] = stop;
  return out;
}

function checkCount(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${what} must be a positive integer, got ${n}`);
}
