import { describe, expect, it } from 'vitest';
import { batchedNms, nms, nmsAcrossCrops, nmsWithinCrop, torchSortDescending } from '../../lib/amg/nms.ts';
import type { Box, MaskCandidate } from '../../lib/amg/types.ts';

const f = Math.fround;

function candidate(box: Box, predictedIou: number, cropBox: Box = [0, 0, 100, 100]): MaskCandidate {
  return {
    rle: { size: [100, 100], counts: [10000] },
    box,
    predictedIou,
    stabilityScore: 1,
    point: [0, 0],
    cropBox,
  };
}

describe('nms (torchvision.ops.nms)', () => {
  it('keeps boxes greedily by descending score', () => {
    const boxes: Box[] = [
      [0, 0, 10, 10],
      [1, 1, 11, 11], // IoU with box 0: 81/119 ≈ 0.68
      [0, 0, 10, 9], // IoU with box 0: 0.9
      [50, 50, 60, 60],
    ];
    expect(nms(boxes, [0.9, 0.8, 0.95, 0.1], 0.7)).toEqual([2, 1, 3]);
    expect(nms(boxes, [0.9, 0.8, 0.95, 0.1], 0.5)).toEqual([2, 3]);
  });

  it('suppresses only when IoU > threshold (strict), with areas without +1', () => {
    // Boxes [0,0,2,2] and [1,0,3,2]: areas 4 and 4 (not 9), intersection 2, IoU exactly 1/3.
    const boxes: Box[] = [
      [0, 0, 2, 2],
      [1, 0, 3, 2],
    ];
    expect(nms(boxes, [1, 0.5], f(1 / 3))).toEqual([0, 1]); // float32(1/3) > 1/3 as a double: kept
    expect(nms(boxes, [1, 0.5], 1 / 3 - 1e-9)).toEqual([0]);
  });

  it('visits equal scores in input order and never suppresses with a zero-area box', () => {
    const same: Box = [0, 0, 5, 5];
    expect(nms([same, same, same], [0.5, 0.5, 0.5], 0.7)).toEqual([0]);
    expect(nms([[3, 3, 3, 3], same, [3, 3, 3, 3]], [1, 1, 1], 0.1)).toEqual([0, 1, 2]);
    expect(nms([], [], 0.7)).toEqual([]);
    expect(() => nms([same], [], 0.7)).toThrow(RangeError);
  });
});

describe('torch sort and batched_nms', () => {
  it('reproduces torch.sort(descending=True) without stable=True (libstdc++ introsort)', () => {
    // torch 2.5.1 on the CPU: torch.sort(v, descending=True)[1]
    const v = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0.5, 1];
    expect(torchSortDescending(v)).toEqual([
      9, 17, 19, 15, 14, 0, 20, 11, 8, 6, 23, 3, 2, 25, 24, 13, 21, 22, 18, 16, 12, 10, 7, 5, 4, 1,
    ]);
    // Up to 16 elements it is an insertion sort, which keeps ties in order.
    expect(torchSortDescending([0, 1, 0, 1])).toEqual([1, 3, 0, 2]);
    expect(torchSortDescending([NaN, 2, 3])).toEqual([0, 2, 1]);
  });

  it('returns a permutation in descending order for long, tie-heavy inputs', () => {
    const values = Array.from({ length: 5000 }, (_, i) => (i * 7919) % 13);
    const order = torchSortDescending(values);
    expect(new Set(order).size).toBe(5000);
    for (let k = 1; k < order.length; k++)
      expect(values[order[k - 1]!]!).toBeGreaterThanOrEqual(values[order[k]!]!);
  });

  it('batched_nms equals nms up to 1000 boxes; above, the same set re-sorted by torch’s sort', () => {
    const boxes = (n: number): Box[] => Array.from({ length: n }, (_, i) => [i * 20, 0, i * 20 + 10, 10]);
    const scores = (n: number) => Array.from({ length: n }, (_, i) => (i % 3) / 3);
    expect(batchedNms(boxes(1000), scores(1000), 0.7)).toEqual(nms(boxes(1000), scores(1000), 0.7));
    const kept = batchedNms(boxes(1001), scores(1001), 0.7);
    const plain = nms(boxes(1001), scores(1001), 0.7);
    expect(kept).not.toEqual(plain); // ties come out in another order
    expect([...kept].sort((a, b) => a - b)).toEqual([...plain].sort((a, b) => a - b));
  });
});

describe('the AMG’s two NMS rounds', () => {
  it('within a crop, ranks by predicted IoU', () => {
    const masks = [
      candidate([0, 0, 10, 10], f(0.9)),
      candidate([0, 0, 10, 10], f(0.95)),
      candidate([50, 50, 60, 60], f(0.89)),
    ];
    expect(nmsWithinCrop(masks, 0.7)).toEqual([masks[1], masks[2]]);
  });

  it('across crops, prefers the smaller crop (score 1/area in float32)', () => {
    const big = candidate([0, 0, 10, 10], f(0.99), [0, 0, 2250, 1500]);
    const small = candidate([0, 0, 10, 10], f(0.9), [0, 0, 1381, 1006]);
    expect(nmsAcrossCrops([big, small], 0.7)).toEqual([small]);
  });
});
