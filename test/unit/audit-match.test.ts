import { describe, expect, it } from 'vitest';
import { complement, greedyPairs, matchImage, removeRegion } from '../../lib/audit/match.ts';
import { decodeRle, encodeMask, rleArea, type Rle } from '../../lib/rle.ts';
import { perturbed, rectMask, type Rect } from './audit-fixture.ts';

const W = 64;
const H = 48;
const rle = (r: Rect): Rle => encodeMask(rectMask(r, W, H), H, W);
const box: Rect = { x: 10, y: 8, w: 20, h: 16 };

describe('matchImage: IoUs of known perturbations', () => {
  it.each([
    ['identical', { kind: 'same' as const }, 1],
    ['shifted 2 px right', { kind: 'shift' as const, dx: 2 }, 18 / 22],
    ['shifted 3 px down', { kind: 'shift' as const, dx: 0, dy: 3 }, 13 / 19],
    ['dilated by 1 px', { kind: 'dilate' as const, k: 1 }, (20 * 16) / (22 * 18)],
    ['eroded by 2 px', { kind: 'erode' as const, k: 2 }, (16 * 12) / (20 * 16)],
  ])('%s', (_, perturbation, iou) => {
    const match = matchImage([rle(box)], [rle(perturbed(box, perturbation)!)]);
    expect(match.best[0]!.iou).toBeCloseTo(iou, 14);
    expect(match.best[0]!.auto).toBe(0);
  });

  it('gives 0 and no partner to a human mask without an overlapping automatic mask', () => {
    const match = matchImage([rle(box)], [rle({ x: 40, y: 30, w: 5, h: 5 })]);
    expect(match.best[0]).toEqual({ iou: 0, auto: null });
    expect(match.pairs).toEqual([]);
    expect(matchImage([rle(box)], []).best[0]).toEqual({ iou: 0, auto: null });
  });

  it('lets one automatic mask be the best for two human masks, but pairs it only once', () => {
    const left: Rect = { x: 10, y: 10, w: 10, h: 10 };
    const right: Rect = { x: 20, y: 10, w: 10, h: 10 };
    const both: Rect = { x: 10, y: 10, w: 20, h: 10 };
    const match = matchImage([rle(left), rle(right)], [rle(both)]);
    expect(match.best.map((b) => b.auto)).toEqual([0, 0]);
    expect(match.best.map((b) => b.iou)).toEqual([0.5, 0.5]);
    expect(match.pairs).toEqual([{ human: 0, auto: 0, iou: 0.5 }]); // tie: the lower human index
    expect(match.humanPairIou).toEqual([0.5, 0]);
    expect(match.autoPairIou).toEqual([0.5]);
  });

  it('removes the ignore region from the automatic masks before IoU', () => {
    const human: Rect = { x: 12, y: 10, w: 16, h: 12 };
    const band = complementOf(rle(human), rle(perturbed(human, { kind: 'dilate', k: 2 })!));
    const auto = rle(perturbed(human, { kind: 'dilate', k: 2 })!);
    expect(matchImage([rle(human)], [auto]).best[0]!.iou).toBeLessThan(1);
    expect(matchImage([rle(human)], [auto], band).best[0]!.iou).toBe(1);
  });
});

/** The pixels of `outer` that are not in `inner`. */
function complementOf(inner: Rle, outer: Rle): Rle {
  return removeRegion(outer, inner);
}

describe('greedyPairs', () => {
  it('takes the highest IoU first and uses each mask once', () => {
    // iou[auto][human]
    const iou = [
      [0.9, 0.8],
      [0.85, 0.0],
    ];
    expect(greedyPairs(iou, 2)).toEqual([
      { human: 0, auto: 0, iou: 0.9 },
      // auto 1's only overlap is human 0, already taken; human 1 has only auto 0, also taken.
    ]);
  });
});

describe('complement and removeRegion', () => {
  it('flips every pixel, including all-on and all-off masks', () => {
    const m = rle(box);
    const flipped = decodeRle(complement(m));
    const original = decodeRle(m);
    for (let i = 0; i < original.length; i++) expect(flipped[i]).toBe(1 - original[i]!);
    expect(complement({ size: [2, 2], counts: [4] }).counts).toEqual([0, 4]);
    expect(complement({ size: [2, 2], counts: [0, 4] }).counts).toEqual([4]);
  });

  it('keeps only the pixels outside the region', () => {
    const region = rle({ x: 10, y: 8, w: 5, h: 16 });
    expect(rleArea(removeRegion(rle(box), region))).toBe(15 * 16);
  });
});
