import { describe, expect, it } from 'vitest';
import {
  boxXyxyToXywh,
  generateCropBoxes,
  uncropBox,
  uncropMaskToRle,
  uncropPoints,
} from '../../lib/amg/crop-boxes.ts';
import { decodeRle, encodeMask } from '../../lib/rle.ts';

describe('generateCropBoxes', () => {
  it('matches the worked example: H=1500, W=2250, one layer', () => {
    const { cropBoxes, layerIdxs } = generateCropBoxes(1500, 2250, 1);
    // overlap 512, crops 1381×1006, x0 in the outer loop.
    expect(cropBoxes).toEqual([
      [0, 0, 2250, 1500],
      [0, 0, 1381, 1006],
      [0, 494, 1381, 1500],
      [869, 0, 2250, 1006],
      [869, 494, 2250, 1500],
    ]);
    expect(layerIdxs).toEqual([0, 1, 1, 1, 1]);
  });

  it('has 1 + Σ 4^i crops; layer 2 crops are 755×567 but clipped at the right edge', () => {
    const { cropBoxes, layerIdxs } = generateCropBoxes(1500, 2250, 2);
    expect(cropBoxes).toHaveLength(1 + 4 + 16);
    const layer2 = cropBoxes.filter((_, i) => layerIdxs[i] === 2);
    const widths = new Set(layer2.map(([x0, , x1]) => x1 - x0));
    const heights = new Set(layer2.map(([, y0, , y1]) => y1 - y0));
    expect([...widths].sort()).toEqual([753, 755]);
    expect([...heights]).toEqual([567]);
    expect(layer2.filter(([x0, , x1]) => x1 - x0 === 753).every(([, , x1]) => x1 === 2250)).toBe(true);
    expect(generateCropBoxes(300, 400, 3).cropBoxes).toHaveLength(1 + 4 + 16 + 64);
  });

  it('returns only the whole image for zero layers', () => {
    expect(generateCropBoxes(10, 20, 0)).toEqual({ cropBoxes: [[0, 0, 20, 10]], layerIdxs: [0] });
  });
});

describe('moving between frames', () => {
  it('uncrops boxes and points by the crop corner', () => {
    expect(uncropBox([1, 2, 3, 4], [869, 494, 2250, 1500])).toEqual([870, 496, 872, 498]);
    expect(Array.from(uncropPoints(Float64Array.from([0.5, 1.25]), [10, 20, 30, 40]))).toEqual([10.5, 21.25]);
    expect(boxXyxyToXywh([869, 494, 2250, 1500])).toEqual([869, 494, 1381, 1006]);
  });
});

describe('uncropMaskToRle', () => {
  const mask = Uint8Array.from([0, 1, 1, 0, 1, 0]); // [[0,1,1],[0,1,0]]

  it('encodes a whole-image crop like mask_to_rle_pytorch (column-major runs)', () => {
    expect(
      uncropMaskToRle({ data: mask, h: 2, w: 3, order: 'row-major' }, [0, 0, 3, 2], 2, 3).counts,
    ).toEqual([2, 3, 1]);
    // The same mask given column-major.
    const columnMajor = Uint8Array.from([0, 0, 1, 1, 1, 0]);
    expect(
      uncropMaskToRle({ data: columnMajor, h: 2, w: 3, order: 'column-major' }, [0, 0, 3, 2], 2, 3).counts,
    ).toEqual([2, 3, 1]);
  });

  it('equals encoding the zero-padded mask, for logits thresholded at > 0', () => {
    const logits = Float32Array.from([-1, 2, 0.5, 0, 3, -0]);
    const rle = uncropMaskToRle({ data: logits, h: 2, w: 3, order: 'row-major' }, [2, 1, 5, 3], 4, 6);
    const padded = new Uint8Array(4 * 6);
    for (let y = 0; y < 2; y++) for (let x = 0; x < 3; x++) padded[(y + 1) * 6 + x + 2] = mask[y * 3 + x]!;
    expect(rle).toEqual(encodeMask(padded, 4, 6));
    expect(decodeRle(rle)).toEqual(padded);
  });

  it('starts with a zero count when the first pixel is on, and ends without a trailing zero', () => {
    const full = uncropMaskToRle(
      { data: new Uint8Array(4).fill(1), h: 2, w: 2, order: 'row-major' },
      [0, 0, 2, 2],
      2,
      2,
    );
    expect(full.counts).toEqual([0, 4]);
    const empty = uncropMaskToRle(
      { data: new Uint8Array(4), h: 2, w: 2, order: 'row-major' },
      [1, 1, 3, 3],
      3,
      3,
    );
    expect(empty.counts).toEqual([9]);
  });

  it('rejects a mask that does not fit its crop', () => {
    expect(() => uncropMaskToRle({ data: mask, h: 2, w: 3, order: 'row-major' }, [0, 0, 3, 3], 4, 4)).toThrow(
      RangeError,
    );
    expect(() => uncropMaskToRle({ data: mask, h: 2, w: 3, order: 'row-major' }, [2, 0, 5, 2], 2, 4)).toThrow(
      RangeError,
    );
  });
});
