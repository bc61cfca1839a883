import { describe, expect, it } from 'vitest';
import { buildAllLayerPointGrids, buildPointGrid, scalePointGrid } from '../../lib/amg/point-grids.ts';

const pairs = (flat: Float64Array) =>
  Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!]);

describe('buildPointGrid', () => {
  it('puts n×n points at pixel centres, row-major with x varying fastest', () => {
    expect(pairs(buildPointGrid(2))).toEqual([
      [0.25, 0.25],
      [0.75, 0.25],
      [0.25, 0.75],
      [0.75, 0.75],
    ]);
    expect(pairs(buildPointGrid(1))).toEqual([[0.5, 0.5]]);
  });

  it('repeats numpy linspace arithmetic, which differs from (k + 0.5)/n in the last bit', () => {
    const grid = buildPointGrid(17);
    // np.linspace(1/34, 1 - 1/34, 17)[1] == 0.08823529411764705, while 1.5/17 == 0.08823529411764706
    expect(grid[2]).toBe(0.08823529411764705);
    expect(grid[2]).not.toBe(1.5 / 17);
    expect(grid[2 * 12]).toBe(0.7352941176470588);
    // The last point is set to stop exactly.
    expect(grid[2 * 16]).toBe(1 - 1 / 34);
    // For n = 32 every value is exact: (k + 0.5)/32.
    const g32 = buildPointGrid(32);
    for (let k = 0; k < 32; k++) expect(g32[2 * k]).toBe((k + 0.5) / 32);
  });

  it('rejects a non-positive count', () => {
    expect(() => buildPointGrid(0)).toThrow(RangeError);
  });
});

describe('buildAllLayerPointGrids', () => {
  it('scales the points per side by int(n / factor^i)', () => {
    const sides = (n: number, layers: number, factor: number) =>
      buildAllLayerPointGrids(n, layers, factor).map((g) => Math.sqrt(g.length / 2));
    expect(sides(32, 2, 2)).toEqual([32, 16, 8]); // the SA-1B setting
    expect(sides(32, 0, 1)).toEqual([32]);
    expect(sides(32, 2, 3)).toEqual([32, 10, 3]); // int() truncates
    expect(sides(32, 2, 1)).toEqual([32, 32, 32]);
  });
});

describe('scalePointGrid', () => {
  it('multiplies by the crop size in float64 (crop frame)', () => {
    const points = scalePointGrid(buildPointGrid(2), 1381, 1006);
    expect(pairs(points)).toEqual([
      [0.25 * 1381, 0.25 * 1006],
      [0.75 * 1381, 0.25 * 1006],
      [0.25 * 1381, 0.75 * 1006],
      [0.75 * 1381, 0.75 * 1006],
    ]);
  });
});
