// Human masks: label images split into objects (with an ignore value), and COCO polygons
// rasterised as pycocotools does (the values below are pycocotools' own answers; the integration
// test audit-pycocotools.test.ts compares many more polygons live).
import { describe, expect, it } from 'vitest';
import { describeLabel, splitLabels } from '../../lib/audit/labels.ts';
import { rleFromPolygon, rleFromPolygons } from '../../lib/audit/polygon.ts';
import { compressRle, decodeRle, rleArea } from '../../lib/rle.ts';

/** A grey label image (one value per pixel) as the RGB the decoder hands back. */
function greyRgb(values: number[]): Uint8Array {
  return Uint8Array.from(values.flatMap((v) => [v, v, v]));
}

describe('splitLabels', () => {
  it('makes one mask per value, leaves out 0 and the ignore value', () => {
    // 3×4 image, row-major.
    // prettier-ignore
    const labels = [
      0,   255, 255, 128,
      0,   255, 128, 7,
      128, 0,   7,   7,
    ];
    const { objects, ignore } = splitLabels(greyRgb(labels), 3, 4, 128);
    expect(objects.map((o) => o.label)).toEqual([7, 255]);
    expect(Array.from(decodeRle(objects[0]!.rle))).toEqual(labels.map((v) => (v === 7 ? 1 : 0)));
    expect(Array.from(decodeRle(objects[1]!.rle))).toEqual(labels.map((v) => (v === 255 ? 1 : 0)));
    expect(Array.from(decodeRle(ignore!))).toEqual(labels.map((v) => (v === 128 ? 1 : 0)));
  });

  it('treats the ignore value as an object when no ignore value is set', () => {
    const { objects, ignore } = splitLabels(greyRgb([0, 128, 255, 0]), 2, 2, null);
    expect(objects.map((o) => o.label)).toEqual([128, 255]);
    expect(ignore).toBeNull();
  });

  it('gives each colour of a colour-coded mask its own label', () => {
    const rgb = Uint8Array.from([255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 0]);
    const { objects } = splitLabels(rgb, 2, 2, null);
    expect(objects.map((o) => describeLabel(o.label))).toEqual(['colour #0000ff', 'colour #ff0000']);
    expect(objects.map((o) => rleArea(o.rle))).toEqual([1, 2]);
  });
});

describe('COCO polygons (pycocotools frPyObjects)', () => {
  it.each([
    [[0, 0, 10, 0, 10, 10, 0, 10], '0:200000000000000000h0', 100],
    [[2.3, 1.7, 8.9, 3.1, 5.2, 9.4], 'V1392N2OM2O1NS1', 23],
    [[-3, -3, 5, -3, 5, 5, -3, 5], '0570000000d2', 25],
  ])('rasterises %j on a 12×12 image as pycocotools does', (polygon, counts, area) => {
    const rle = rleFromPolygon(polygon, 12, 12);
    expect(compressRle(rle).counts).toBe(counts);
    expect(rleArea(rle)).toBe(area);
  });

  it('merges the polygons of one object', () => {
    const two = rleFromPolygons(
      [
        [0, 0, 4, 0, 4, 4, 0, 4],
        [6, 6, 10, 6, 10, 10, 6, 10],
      ],
      12,
      12,
    );
    expect(rleArea(two)).toBe(32);
  });

  it('leaves out polygons of fewer than 3 points, and refuses malformed ones', () => {
    expect(rleFromPolygons([[1, 2, 3, 4]], 5, 5)).toEqual({ size: [5, 5], counts: [25] });
    expect(
      rleArea(
        rleFromPolygons(
          [
            [1, 1],
            [0, 0, 4, 0, 4, 4, 0, 4],
          ],
          5,
          5,
        ),
      ),
    ).toBe(16);
    expect(() => rleFromPolygon([1, 2, 3, 4], 5, 5)).toThrow(/at least 3/);
    expect(() => rleFromPolygons([[0, 0, 4, 0, 4]], 5, 5)).toThrow(/odd count of 5/);
    expect(() => rleFromPolygons([[0, 0, 4, 0, 4, NaN]], 5, 5)).toThrow(/finite/);
    expect(() => rleFromPolygons([], 5, 5)).toThrow(/at least one polygon/);
  });
});
