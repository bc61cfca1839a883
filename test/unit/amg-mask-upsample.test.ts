// lib/amg/mask-upsample.ts against a direct, pixel-by-pixel transcription of torch's two resizes
// (the bit-exact comparison with torch itself is in test/integration/amg-official-parity.test.ts),
// plus the measurements behind its design: ms per mask, and what a fused one-stage resize would
// change.
import { describe, expect, it } from 'vitest';
import {
  coldBound,
  linearTaps,
  planMaskUpsample,
  upsampleAndBinarize,
  upsampleMaskLogits,
  type MaskUpsamplePlan,
} from '../../lib/amg/mask-upsample.ts';
import { getPreprocessShape } from '../../lib/sam/resize-longest-side.ts';
import { prng } from '../helpers/random.ts';

const f = Math.fround;

/** Smooth blobs plus some noise: realistic boundaries and plenty of values near 0 and ±1. */
function lowResLogits(seed: number, noise = 2): Float32Array {
  const rand = prng(seed);
  const blobs = Array.from({ length: 3 }, () => ({
    cx: rand() * 256,
    cy: rand() * 256,
    r: 15 + rand() * 80,
  }));
  const out = new Float32Array(256 * 256);
  for (let y = 0; y < 256; y++) {
    for (let x = 0; x < 256; x++) {
      let v = -8;
      for (const b of blobs) v = Math.max(v, 12 * (1 - ((x - b.cx) ** 2 + (y - b.cy) ** 2) / b.r ** 2));
      out[y * 256 + x] = v + (rand() - 0.5) * noise;
    }
  }
  return out;
}

/**
 * torch's generic bilinear kernel written out per output pixel: x interpolation of the two source
 * rows, then y, each step a·w0 + c·w1 fused as fma(a, w0, round32(c·w1)).
 */
function referenceResize(
  src: Float32Array,
  inH: number,
  inW: number,
  outH: number,
  outW: number,
): Float32Array {
  const ty = linearTaps(inH, outH);
  const tx = linearTaps(inW, outW);
  const out = new Float32Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const at = (r: number) =>
        f(src[r * inW + tx.i0[x]!]! * tx.w0[x]! + f(src[r * inW + tx.i1[x]!]! * tx.w1[x]!));
      out[y * outW + x] = f(at(ty.i0[y]!) * ty.w0[y]! + f(at(ty.i1[y]!) * ty.w1[y]!));
    }
  }
  return out;
}

/** Sam.postprocess_masks the slow way: full 1024×1024, crop, resize. */
function referencePostprocess(low: Float32Array, h: number, w: number): Float32Array {
  const [inH, inW] = getPreprocessShape(h, w, 1024);
  const big = referenceResize(low, 256, 256, 1024, 1024);
  const cropped = new Float32Array(inH * inW);
  for (let y = 0; y < inH; y++) cropped.set(big.subarray(y * 1024, y * 1024 + inW), y * inW);
  return inH === h && inW === w ? cropped : referenceResize(cropped, inH, inW, h, w);
}

function countDifferences(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe('linearTaps (torch area_pixel_compute_source_index, align_corners=False)', () => {
  it('256 → 1024: half-pixel centres, clamped at 0, last index repeated', () => {
    const t = linearTaps(256, 1024);
    // d = 0, 1: src = 0.25·(d + 0.5) − 0.5 < 0 → 0
    expect([t.i0[0], t.i1[0], t.w0[0], t.w1[0]]).toEqual([0, 1, 1, 0]);
    expect([t.i0[1], t.i1[1], t.w0[1], t.w1[1]]).toEqual([0, 1, 1, 0]);
    expect([t.i0[2], t.i1[2], t.w0[2], t.w1[2]]).toEqual([0, 1, 0.875, 0.125]);
    expect([t.i0[5], t.i1[5], t.w0[5], t.w1[5]]).toEqual([0, 1, 0.125, 0.875]);
    expect([t.i0[6], t.i1[6], t.w0[6], t.w1[6]]).toEqual([1, 2, 0.875, 0.125]);
    // d = 1023: src = 255.375, i1 clamped to 255
    expect([t.i0[1023], t.i1[1023], t.w0[1023], t.w1[1023]]).toEqual([255, 255, 0.625, 0.375]);
  });

  it('computes the scale and weights in float32', () => {
    const t = linearTaps(683, 1500);
    const scale = f(683 / 1500);
    const src = f(f(scale * f(700 + 0.5)) - 0.5);
    expect(t.i0[700]).toBe(Math.floor(src));
    expect(t.w1[700]).toBe(f(src - Math.floor(src)));
    expect(t.w0[700]).toBe(f(1 - t.w1[700]!));
  });

  it('copies an axis that keeps its size', () => {
    const t = linearTaps(5, 5);
    expect(Array.from(t.i0)).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(t.w0)).toEqual([1, 1, 1, 1, 1]);
    expect(Array.from(t.w1)).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('upsampleMaskLogits', () => {
  it('equals the pixel-by-pixel two-stage reference exactly (up- and downsampling, copies, thin crops)', () => {
    for (const [h, w] of [
      [37, 53],
      [300, 1100],
      [1024, 700],
      [683, 1024],
      [2, 3],
      [1, 40],
    ] as const) {
      const low = lowResLogits(h * 7919 + w);
      const ours = upsampleMaskLogits(low, planMaskUpsample(h, w)).data;
      expect(countDifferences(ours, referencePostprocess(low, h, w)), `${h}×${w}`).toBe(0);
    }
  });

  it('gives the same values in column-major order, and reuses a plan across masks', () => {
    const plan = planMaskUpsample(150, 97);
    for (const seed of [1, 2]) {
      const low = lowResLogits(seed);
      const row = upsampleMaskLogits(low, plan, 'row-major');
      const col = upsampleMaskLogits(low, plan, 'column-major');
      expect(col.order).toBe('column-major');
      let mismatches = 0;
      for (let y = 0; y < 150; y++)
        for (let x = 0; x < 97; x++) if (col.data[x * 150 + y] !== row.data[y * 97 + x]) mismatches++;
      expect(mismatches).toBe(0);
    }
  });

  it('skips stage 2 for a crop already at the model size (torch copies)', () => {
    const plan = planMaskUpsample(683, 1024);
    expect(plan.inputSize).toEqual([683, 1024]);
    expect(plan.rows2).toBeNull();
    expect(plan.cols2).toBeNull();
    expect(planMaskUpsample(1500, 2250).inputSize).toEqual([683, 1024]);
  });

  it('maps a constant to the same constant, and writes into a given buffer', () => {
    const plan = planMaskUpsample(20, 30);
    const out = new Float32Array(600);
    const result = upsampleMaskLogits(new Float32Array(65536).fill(-2.5), plan, 'row-major', out);
    expect(result.data).toBe(out);
    expect(out.every((v) => v === -2.5)).toBe(true);
    expect(() => upsampleMaskLogits(new Float32Array(100), plan)).toThrow(RangeError);
    expect(() => upsampleMaskLogits(new Float32Array(65536), plan, 'row-major', new Float32Array(5))).toThrow(
      RangeError,
    );
  });
});

describe('upsampleAndBinarize', () => {
  it('thresholds exactly the values upsampleMaskLogits computes, and counts the stability sets', () => {
    for (const [h, w] of [
      [300, 200],
      [683, 1024],
    ] as const) {
      const plan = planMaskUpsample(h, w);
      const low = lowResLogits(h + w, 6);
      const logits = upsampleMaskLogits(low, plan).data;
      for (const offset of [1, 0.3]) {
        const { mask, intersections, unions } = upsampleAndBinarize(low, plan, offset);
        let hi = 0;
        let lo = 0;
        let wrong = 0;
        logits.forEach((v, i) => {
          if (v > f(offset)) hi++;
          if (v > f(-offset)) lo++;
          if (mask.data[i] !== (v > 0 ? 1 : 0)) wrong++;
        });
        expect(wrong).toBe(0);
        expect([intersections, unions]).toEqual([hi, lo]);
        expect(mask.order).toBe('row-major');
      }
    }
  });
});

describe('upsampleAndBinarize windows', () => {
  /** Thresholds the full logits; what the window must reproduce. */
  function expected(logits: Float32Array, offset: number) {
    let intersections = 0;
    let unions = 0;
    const mask = new Uint8Array(logits.length);
    logits.forEach((v, i) => {
      if (v > f(offset)) intersections++;
      if (v > f(-offset)) unions++;
      mask[i] = v > 0 ? 1 : 0;
    });
    return { mask, intersections, unions };
  }

  /** Mostly cold low-res logits with a few warm samples, one possibly right at the cold bound. */
  function sparse(seed: number, offset: number): Float32Array {
    const rand = prng(seed);
    const low = new Float32Array(65536).map(() => coldBound(offset) - rand() * 5);
    const n = Math.floor(rand() * 4);
    for (let k = 0; k < n; k++) {
      const [x, y] = [Math.floor(rand() * 256), Math.floor(rand() * 256)];
      for (let dy = 0; dy < 3 && y + dy < 256; dy++) {
        for (let dx = 0; dx < 5 && x + dx < 256; dx++) low[(y + dy) * 256 + x + dx] = (rand() - 0.3) * 20;
      }
    }
    if (rand() < 0.3) low[Math.floor(rand() * 65536)] = f(coldBound(offset)) + 1e-6; // barely warm
    return low;
  }

  it('computes only pixels that can matter, and gets every pixel and count right', () => {
    let windows = 0;
    let empty = 0;
    for (const [h, w] of [
      [37, 53],
      [683, 1024],
      [300, 1100],
      [1, 40],
      [500, 7],
    ] as const) {
      const plan = planMaskUpsample(h, w);
      for (let seed = 0; seed < 12; seed++) {
        const offset = [1, 0.3, 0, 2][seed % 4]!;
        const low = sparse(h * 131 + w * 7 + seed, offset);
        const ours = upsampleAndBinarize(low, plan, offset, new Uint8Array(h * w).fill(7));
        const want = expected(upsampleMaskLogits(low, plan).data, offset);
        expect([ours.intersections, ours.unions], `${h}×${w} seed ${seed}`).toEqual([
          want.intersections,
          want.unions,
        ]);
        expect(countDifferences(ours.mask.data, want.mask)).toBe(0);
        if (ours.window) {
          windows++;
          const [x0, y0, x1, y1] = ours.window;
          // Nothing outside the window is on.
          want.mask.forEach((v, i) => {
            const [x, y] = [i % w, Math.floor(i / w)];
            if (v && (x < x0 || x > x1 || y < y0 || y > y1))
              throw new Error(`pixel ${x},${y} outside the window`);
          });
          expect(x1 - x0 + 1 < w || y1 - y0 + 1 < h || w < 60).toBe(true); // it did skip something
        } else empty++;
      }
    }
    // Warm samples often land in the padding, which is cropped away: about 22 of the 60 cases get a
    // window (12 to 31 over 300 seed choices), so the bound only checks that both paths run often.
    expect(windows).toBeGreaterThan(10);
    expect(empty).toBeGreaterThan(0);
  });

  it('treats NaN low-res logits as warm (computed, never skipped)', () => {
    const plan = planMaskUpsample(50, 60);
    const low = new Float32Array(65536).fill(-10);
    low[100 * 256 + 100] = NaN;
    const ours = upsampleAndBinarize(low, plan);
    expect(ours.window).not.toBeNull();
    expect([ours.intersections, ours.unions]).toEqual([0, 0]);
  });
});

// ---------------------------------------------------------------------------------------------
// Measurements (printed; the only assertions are loose sanity bounds)
// ---------------------------------------------------------------------------------------------

/**
 * The alternative we did not ship: compose the two stages into one resize with up to 4 taps per
 * axis (weights multiplied in float64) and evaluate it separably, rounding to float32 once per
 * pass. Taps are padded to 4 with zero weights so the loops are as tight as the exact path's.
 */
const TAPS = 4;
function planFusedOneStage(h: number, w: number) {
  const [inH, inW] = getPreprocessShape(h, w, 1024);
  const axis = (inSize: number, outSize: number) => {
    const s1 = linearTaps(256, 1024);
    const s2 = linearTaps(inSize, outSize);
    const index = new Int32Array(outSize * TAPS);
    const weight = new Float64Array(outSize * TAPS);
    for (let d = 0; d < outSize; d++) {
      const taps = new Map<number, number>();
      const add = (p: number, wt: number) => {
        taps.set(s1.i0[p]!, (taps.get(s1.i0[p]!) ?? 0) + wt * s1.w0[p]!);
        taps.set(s1.i1[p]!, (taps.get(s1.i1[p]!) ?? 0) + wt * s1.w1[p]!);
      };
      add(s2.i0[d]!, s2.w0[d]!);
      add(s2.i1[d]!, s2.w1[d]!);
      [...taps.entries()].forEach(([i, wt], k) => {
        index[d * TAPS + k] = i;
        weight[d * TAPS + k] = wt;
      });
    }
    return { index, weight };
  };
  return { h, w, rows: axis(inH, h), cols: axis(inW, w), tmp: new Float32Array(256 * w) };
}

function fusedOneStage(low: Float32Array, p: ReturnType<typeof planFusedOneStage>, out: Float32Array): void {
  const { h, w, rows, cols, tmp } = p;
  const ci = cols.index;
  const cw = cols.weight;
  for (let r = 0; r < 256; r++) {
    const s = r * 256;
    for (let x = 0, k = 0; x < w; x++, k += TAPS) {
      tmp[r * w + x] =
        low[s + ci[k]!]! * cw[k]! +
        low[s + ci[k + 1]!]! * cw[k + 1]! +
        low[s + ci[k + 2]!]! * cw[k + 2]! +
        low[s + ci[k + 3]!]! * cw[k + 3]!;
    }
  }
  for (let y = 0, k = 0; y < h; y++, k += TAPS) {
    const [a, b, c, d] = [0, 1, 2, 3].map((j) => rows.index[k + j]! * w);
    const [wa, wb, wc, wd] = [0, 1, 2, 3].map((j) => rows.weight[k + j]!);
    const o = y * w;
    for (let x = 0; x < w; x++) {
      out[o + x] = tmp[a! + x]! * wa! + tmp[b! + x]! * wb! + tmp[c! + x]! * wc! + tmp[d! + x]! * wd!;
    }
  }
}

function bestOf(runs: number, fn: () => void): number {
  fn();
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

describe('measurements', () => {
  it('ms per mask, and a fused one-stage resize vs the exact two stages', () => {
    const lines: string[] = [];
    for (const [h, w] of [
      [1500, 2250],
      [683, 1024],
    ] as const) {
      const plan: MaskUpsamplePlan = planMaskUpsample(h, w);
      const low = lowResLogits(99, 1);
      const out = new Float32Array(h * w);
      const bytes = new Uint8Array(h * w);
      const exactRow = bestOf(4, () => upsampleMaskLogits(low, plan, 'row-major', out));
      const exactCol = bestOf(4, () => upsampleMaskLogits(low, plan, 'column-major', out));
      const binarized = bestOf(4, () => upsampleAndBinarize(low, plan, 1, bytes));
      const exact = upsampleMaskLogits(low, plan).data;

      const fusedPlan = planFusedOneStage(h, w);
      const fused = new Float32Array(h * w);
      const fusedMs = bestOf(4, () => fusedOneStage(low, fusedPlan, fused));
      let maxDiff = 0;
      let flips = 0;
      for (let i = 0; i < exact.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(exact[i]! - fused[i]!));
        if (exact[i]! > 0 !== fused[i]! > 0) flips++;
      }
      lines.push(
        `${h}×${w}: exact ${exactRow.toFixed(1)} ms (row-major), ${exactCol.toFixed(1)} ms (column-major), ` +
          `${binarized.toFixed(1)} ms (upsampleAndBinarize of a mask covering most of the crop); one-stage fused ${fusedMs.toFixed(1)} ms, ` +
          `max |Δ logit| ${maxDiff.toExponential(2)}, ${flips} of ${h * w} mask pixels flipped`,
      );
      expect(maxDiff).toBeLessThan(1e-4); // the fused resize is the same function up to rounding
      expect(exactRow).toBeLessThan(5000);
    }
    console.log(`[mask upsampling] best of 4 on this machine:\n  ${lines.join('\n  ')}`);
  });
});
