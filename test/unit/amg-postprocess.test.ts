import { describe, expect, it } from 'vitest';
import { finishMasks, postprocessSmallRegions, removeSmallRegions } from '../../lib/amg/postprocess.ts';
import type { Box, MaskCandidate } from '../../lib/amg/types.ts';
import { decodeRle, encodeMask, type Rle } from '../../lib/rle.ts';
import { rleBox } from '../../lib/amg/mask-filters.ts';

/** A mask from rows of '#' (on) and '.' (off). */
function mask(...rows: string[]): Rle {
  const h = rows.length;
  const w = rows[0]!.length;
  const data = new Uint8Array(h * w);
  rows.forEach((r, y) => [...r].forEach((c, x) => (data[y * w + x] = c === '#' ? 1 : 0)));
  return encodeMask(data, h, w);
}

function rows(rle: Rle): string[] {
  const [h, w] = rle.size;
  const data = decodeRle(rle);
  return Array.from({ length: h }, (_, y) =>
    Array.from({ length: w }, (_, x) => (data[y * w + x] ? '#' : '.')).join(''),
  );
}

describe('removeSmallRegions', () => {
  it('fills holes smaller than the threshold, including background touching the border', () => {
    const m = mask(
      '.#####', //
      '##.###',
      '######',
      '###...',
      '###...',
    );
    const out = removeSmallRegions(m, 2, 'holes');
    expect(out.changed).toBe(true);
    expect(rows(out.rle)).toEqual(['######', '######', '######', '###...', '###...']);
    expect(removeSmallRegions(m, 1, 'holes')).toEqual({ rle: m, changed: false, largestArea: 6 });
  });

  it('joins diagonal neighbours (8-connectivity) for islands and holes alike', () => {
    const m = mask(
      '#...', //
      '.#..',
      '....',
      '...#',
    );
    // The diagonal pair is one island of 2: kept at threshold 2, the single pixel removed.
    expect(rows(removeSmallRegions(m, 2, 'islands').rle)).toEqual(['#...', '.#..', '....', '....']);
    // The background here is one component (it connects through the diagonal gaps).
    expect(removeSmallRegions(mask('#.#', '.#.', '#.#'), 3, 'holes').changed).toBe(false);
  });

  it('keeps the largest island when every island is small, and still reports a change', () => {
    const m = mask('##..#', '##...', '.....', '#....');
    const out = removeSmallRegions(m, 10, 'islands');
    expect(rows(out.rle)).toEqual(['##...', '##...', '.....', '.....']);
    expect(out.largestArea).toBe(4);
    // A single small island: the mask is unchanged, but the official flag says "changed".
    const single = mask('....', '.##.', '....');
    expect(removeSmallRegions(single, 10, 'islands')).toEqual({ rle: single, changed: true, largestArea: 2 });
  });

  it('breaks ties for the largest island the way OpenCV numbers components (2×2 blocks, row-major)', () => {
    // Islands at (row 1, col 0) and (row 0, col 5): raster order would label the second first,
    // OpenCV's block scan (rows 0–1 together) meets the first one first.
    const m = mask('.....#', '#.....', '......');
    expect(rows(removeSmallRegions(m, 5, 'islands').rle)).toEqual(['......', '#.....', '......']);
    // Rows 1 and 2 are in different block rows: the one in row 1 comes first.
    const n = mask('......', '.....#', '#.....');
    expect(rows(removeSmallRegions(n, 5, 'islands').rle)).toEqual(['......', '.....#', '......']);
  });

  it('leaves empty and full masks alone', () => {
    const empty = mask('...', '...');
    expect(removeSmallRegions(empty, 5, 'islands')).toEqual({ rle: empty, changed: false, largestArea: 0 });
    const full = mask('###', '###');
    expect(removeSmallRegions(full, 5, 'holes').changed).toBe(false);
  });
});

function candidate(
  rle: Rle,
  predictedIou = 0.9,
  cropBox: Box = [0, 0, rle.size[1], rle.size[0]],
): MaskCandidate {
  return { rle, box: rleBox(rle), predictedIou, stabilityScore: 0.97, point: [1, 1], cropBox };
}

describe('postprocessSmallRegions', () => {
  it('updates changed masks, prefers unchanged ones in NMS, and keeps the scores', () => {
    const square = ['###..', '###..', '###..', '.....', '.....'];
    const clean = candidate(mask(...square), 0.91);
    const speckled = candidate(mask('###..', '#.#..', '###..', '.....', '....#'), 0.99); // a hole and an island
    const out = postprocessSmallRegions([speckled, clean], 2, 0.7);
    // After clean-up both are the same 3×3 square; the unchanged one wins the NMS.
    expect(out).toEqual([clean]);
    const alone = postprocessSmallRegions([speckled], 2, 0.7);
    expect(rows(alone[0]!.rle)).toEqual(square);
    expect(alone[0]!.box).toEqual([0, 0, 2, 2]);
    expect(alone[0]!.predictedIou).toBe(0.99);
  });

  it('with dropSmallMasks (the paper), drops a mask whose largest island is too small', () => {
    const tiny = candidate(mask('.#..', '....', '..#.', '....'));
    expect(postprocessSmallRegions([tiny], 3, 0.7)).toHaveLength(1);
    expect(postprocessSmallRegions([tiny], 3, 0.7, true)).toHaveLength(0);
  });
});

describe('finishMasks', () => {
  const a = candidate(mask('##..', '##..', '....', '....'), 0.9, [0, 0, 4, 4]);
  const b = candidate(mask('##..', '##..', '....', '....'), 0.8, [0, 0, 2, 4]);

  it('runs the cross-crop NMS only when there are several crops, smaller crops first', () => {
    expect(finishMasks([[a, b]])).toEqual([a, b]);
    expect(finishMasks([[a], [b]])).toEqual([b]);
  });

  it('applies the paper’s coverage filter last', () => {
    const full = candidate(mask('####', '####', '####', '###.'));
    expect(finishMasks([[full, a]], { maxMaskCoverage: 0.9 })).toEqual([a]); // 15/16 ≥ 0.9
    expect(finishMasks([[full, a]], { maxMaskCoverage: 0.95 })).toEqual([full, a]);
    expect(finishMasks([[full, a]])).toEqual([full, a]);
  });
});
