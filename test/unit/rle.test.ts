import { describe, expect, it } from 'vitest';
import {
  compressRle,
  decodeRle,
  decodeRleColumnMajor,
  decompressRle,
  encodeColumnMajor,
  encodeMask,
  rleArea,
  rleIou,
  rleIouMatrix,
  rleMerge,
  rleToBbox,
  RleBuilder,
  toRle,
  type Rle,
} from '../../lib/rle.ts';
import { prng } from '../helpers/random.ts';

/** A random mask: noise of a random density, or a random rectangle, or empty / full. */
function randomMask(rand: () => number, h: number, w: number): Uint8Array {
  const mask = new Uint8Array(h * w);
  const kind = Math.floor(rand() * 4);
  if (kind === 0) {
    const p = rand();
    for (let i = 0; i < mask.length; i++) mask[i] = rand() < p ? 1 : 0;
  } else if (kind === 1) {
    const x0 = Math.floor(rand() * w);
    const y0 = Math.floor(rand() * h);
    const x1 = x0 + Math.floor(rand() * (w - x0 + 1));
    const y1 = y0 + Math.floor(rand() * (h - y0 + 1));
    for (let y = y0; y < y1; y++) mask.fill(1, y * w + x0, y * w + x1);
  } else if (kind === 2) {
    mask.fill(1);
  }
  return mask;
}

/** Reference: transpose to column-major, then count runs the obvious way. */
function naiveCounts(mask: Uint8Array, h: number, w: number): number[] {
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = mask[y * w + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

function naiveBbox(mask: Uint8Array, h: number, w: number): number[] {
  let [xs, ys, xe, ye] = [w, h, -1, -1];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      xs = Math.min(xs, x);
      ys = Math.min(ys, y);
      xe = Math.max(xe, x);
      ye = Math.max(ye, y);
    }
  }
  return xe < 0 ? [0, 0, 0, 0] : [xs, ys, xe - xs + 1, ye - ys + 1];
}

function naiveIou(a: Uint8Array, b: Uint8Array, crowd: boolean): number {
  let inter = 0;
  let union = 0;
  let areaA = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] && b[i]) inter++;
    if (a[i] || b[i]) union++;
    if (a[i]) areaA++;
  }
  return inter === 0 ? 0 : inter / (crowd ? areaA : union);
}

const rows = (m: number[][]) => Uint8Array.from(m.flat());

describe('encodeMask: spec examples (sam-spec §3)', () => {
  it('[[0,1,1],[0,1,0]] gives [2, 3, 1]', () => {
    expect(
      encodeMask(
        rows([
          [0, 1, 1],
          [0, 1, 0],
        ]),
        2,
        3,
      ),
    ).toEqual({ size: [2, 3], counts: [2, 3, 1] });
  });

  it('all ones gives [0, H·W]', () => {
    expect(encodeMask(new Uint8Array(12).fill(1), 3, 4).counts).toEqual([0, 12]);
  });

  it('all zeros gives [H·W]', () => {
    expect(encodeMask(new Uint8Array(12), 3, 4).counts).toEqual([12]);
  });

  it('treats any nonzero byte as on', () => {
    expect(
      encodeMask(
        rows([
          [0, 255, 7],
          [0, 128, 0],
        ]),
        2,
        3,
      ).counts,
    ).toEqual([2, 3, 1]);
  });

  it('thresholds logits with value > threshold', () => {
    const logits = Float32Array.from([-1, 0.5, 2, -0.1, 0, 3]); // 2×3
    expect(encodeMask(logits, 2, 3).counts).toEqual([2, 1, 1, 2]); // columns 00 10 11
  });

  it('rejects a mask whose length does not match h×w', () => {
    expect(() => encodeMask(new Uint8Array(5), 2, 3)).toThrow(/5 values, expected 2×3/);
  });
});

describe('round trips on random masks', () => {
  const rand = prng(1);
  const sizes: Array<[number, number]> = [
    [1, 1],
    [1, 17],
    [17, 1],
    [7, 5],
    [32, 48],
    [61, 43],
  ];

  it('encode matches a naive encoder and decode inverts it', () => {
    for (let trial = 0; trial < 200; trial++) {
      const [h, w] = sizes[trial % sizes.length]!;
      const mask = randomMask(rand, h, w);
      const rle = encodeMask(mask, h, w);
      expect(rle.counts).toEqual(naiveCounts(mask, h, w));
      expect(decodeRle(rle)).toEqual(mask);
      expect(rleArea(rle)).toBe(mask.reduce((s, v) => s + v, 0));
      expect(rleToBbox(rle)).toEqual(naiveBbox(mask, h, w));
    }
  });

  it('column-major encode and decode agree with the row-major ones', () => {
    for (let trial = 0; trial < 50; trial++) {
      const [h, w] = sizes[trial % sizes.length]!;
      const mask = randomMask(rand, h, w);
      const rle = encodeMask(mask, h, w);
      const columnMajor = decodeRleColumnMajor(rle);
      expect(encodeColumnMajor(columnMajor, h, w)).toEqual(rle);
    }
  });

  it('compression round-trips, including counts far above 2^31', () => {
    for (let trial = 0; trial < 200; trial++) {
      const [h, w] = sizes[trial % sizes.length]!;
      const rle = encodeMask(randomMask(rand, h, w), h, w);
      expect(decompressRle(compressRle(rle))).toEqual(rle);
    }
    const huge: Rle = { size: [2 ** 20, 2 ** 20], counts: [2 ** 39, 5, 2 ** 40 - 2 ** 39 - 5] };
    expect(decompressRle(compressRle(huge))).toEqual(huge);
  });

  it('RleBuilder from column-major runs matches encoding the mask', () => {
    for (let trial = 0; trial < 50; trial++) {
      const [h, w] = sizes[trial % sizes.length]!;
      const mask = randomMask(rand, h, w);
      const columnMajor = decodeRleColumnMajor(encodeMask(mask, h, w));
      const builder = new RleBuilder(h, w);
      // Add single pixels and short runs, so joining touching runs is exercised too.
      for (let p = 0; p < columnMajor.length; p++) {
        if (!columnMajor[p]) continue;
        const length = columnMajor[p + 1] && rand() < 0.5 ? 2 : 1;
        builder.add(p, length);
        p += length - 1;
      }
      expect(builder.finish()).toEqual(encodeMask(mask, h, w));
    }
    const builder = new RleBuilder(2, 2);
    builder.add(2);
    expect(() => builder.add(1)).toThrow(/out of order/);
  });

  it('toRle accepts both forms', () => {
    const rle = encodeMask(
      rows([
        [0, 1, 1],
        [0, 1, 0],
      ]),
      2,
      3,
    );
    expect(toRle(compressRle(rle))).toEqual(rle);
    expect(toRle(rle)).toBe(rle);
  });
});

describe('compression: known strings', () => {
  it('matches pycocotools on small examples', () => {
    // Values checked against pycocotools 2.0.11 (mask.encode of the same arrays).
    expect(compressRle({ size: [2, 3], counts: [2, 3, 1] }).counts).toBe('231');
    expect(compressRle({ size: [3, 4], counts: [0, 12] }).counts).toBe('0<');
    expect(compressRle({ size: [3, 4], counts: [12] }).counts).toBe('<');
  });

  it('decodes an SA-1B string to the recorded area', () => {
    // From /work/shared/data/format_samples/sa1b_format_excerpt.json (area 137 there).
    const rle = decompressRle({ size: [1080, 786], counts: 'Tjd>2dQ14M2N2O0O1O001O00O20O0010NY]i:' });
    expect(rleArea(rle)).toBe(137);
  });

  it('rejects malformed strings with a clear error', () => {
    expect(() => decompressRle({ size: [2, 3], counts: '23' })).toThrow(/add up to 5 pixels/);
    expect(() => decompressRle({ size: [2, 3], counts: '2 1' })).toThrow(/invalid character/);
    expect(() => decompressRle({ size: [2, 3], counts: '2P' })).toThrow(/ends inside a count/);
  });
});

describe('IoU and merge on runs', () => {
  const rand = prng(7);

  it('agrees with pixel counting, with and without iscrowd', () => {
    const [h, w] = [23, 31];
    const masks = Array.from({ length: 12 }, () => randomMask(rand, h, w));
    const rles = masks.map((m) => encodeMask(m, h, w));
    const dts = rles.slice(0, 5);
    const gts = rles.slice(5);
    const crowd = gts.map((_, g) => g % 2 === 1);
    const matrix = rleIouMatrix(dts, gts, crowd);
    expect(matrix).toHaveLength(5);
    dts.forEach((dt, d) =>
      gts.forEach((gt, g) => {
        const expected = naiveIou(masks[d]!, masks[5 + g]!, crowd[g]!);
        expect(matrix[d]![g]).toBeCloseTo(expected, 12);
        expect(rleIou(dt, gt, crowd[g])).toBe(matrix[d]![g]);
      }),
    );
  });

  it('rejects masks of different sizes and a wrong iscrowd length', () => {
    const a = encodeMask(new Uint8Array(6), 2, 3);
    const b = encodeMask(new Uint8Array(6), 3, 2);
    expect(() => rleIou(a, b)).toThrow(/sizes differ/);
    expect(() => rleIouMatrix([a], [a], [true, false])).toThrow(/iscrowd has 2 entries/);
  });

  it('merges as pixelwise OR / AND', () => {
    const [h, w] = [19, 13];
    for (let trial = 0; trial < 30; trial++) {
      const masks = [randomMask(rand, h, w), randomMask(rand, h, w), randomMask(rand, h, w)];
      const rles = masks.map((m) => encodeMask(m, h, w));
      const or = masks[0]!.map((_, i) => (masks.some((m) => m[i]) ? 1 : 0));
      const and = masks[0]!.map((_, i) => (masks.every((m) => m[i]) ? 1 : 0));
      expect(rleMerge(rles)).toEqual(encodeMask(or, h, w));
      expect(rleMerge(rles, true)).toEqual(encodeMask(and, h, w));
    }
  });
});
