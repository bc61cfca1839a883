import { describe, expect, it } from 'vitest';
import { maskBoxToXywh, maskRecord, sa1bImageJson } from '../../lib/amg/records.ts';
import type { MaskCandidate } from '../../lib/amg/types.ts';
import { decompressRle, encodeMask } from '../../lib/rle.ts';

const f = Math.fround;

// A 2×3 block at x 4..6, y 1..2 of a 5×8 image.
function block(): MaskCandidate {
  const data = new Uint8Array(40);
  for (let y = 1; y <= 2; y++) for (let x = 4; x <= 6; x++) data[y * 8 + x] = 1;
  return {
    rle: encodeMask(data, 5, 8),
    box: [4, 1, 6, 2],
    predictedIou: f(0.9312),
    stabilityScore: f(0.9755),
    point: [5.25, 1.75],
    cropBox: [2, 0, 8, 4],
  };
}

describe('maskRecord', () => {
  it('writes the official record: XYWH bbox one less than the extent, XYWH crop box, RLE area', () => {
    const r = maskRecord(block());
    expect(r.bbox).toEqual([4, 1, 2, 1]); // pycocotools toBbox would say [4, 1, 3, 2]
    expect(r.crop_box).toEqual([2, 0, 6, 4]);
    expect(r.area).toBe(6);
    expect(r.point_coords).toEqual([[5.25, 1.75]]);
    expect(r.predicted_iou).toBe(f(0.9312));
    expect(r.stability_score).toBe(f(0.9755));
    expect(r.segmentation.size).toEqual([5, 8]);
    expect(typeof r.segmentation.counts).toBe('string');
    expect(decompressRle(r.segmentation)).toEqual(block().rle);
    expect(maskBoxToXywh([3, 3, 3, 3])).toEqual([3, 3, 0, 0]); // a one-pixel mask
  });
});

describe('sa1bImageJson', () => {
  const image = { image_id: 17, width: 8, height: 5, file_name: 'sa_17.jpg' };

  it('writes SA-1B’s per-image layout with numbered annotations', () => {
    const json = sa1bImageJson(image, [block(), block()], 100);
    expect(json.image).toEqual(image);
    expect(json.annotations.map((a) => a.id)).toEqual([100, 101]);
    expect(Object.keys(json.annotations[0]!)).toEqual([
      'id',
      'segmentation',
      'bbox',
      'area',
      'predicted_iou',
      'point_coords',
      'crop_box',
      'stability_score',
    ]);
    // Survives JSON as is (plain numbers and strings only).
    expect(JSON.parse(JSON.stringify(json))).toEqual(json);
    expect(sa1bImageJson(image, []).annotations).toEqual([]);
    expect(sa1bImageJson(image, [block()]).annotations[0]!.id).toBe(1);
  });

  it('rejects masks of another size than the image', () => {
    expect(() => sa1bImageJson({ ...image, width: 9 }, [block()])).toThrow(RangeError);
  });
});
