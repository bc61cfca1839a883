// Upsampling of the decoder's 256×256 low-res logits to a crop's size: `Sam.postprocess_masks`
// (sam-spec §1), reproduced bit for bit as torch computes it on the CPU.
//
// The official path is two bilinear resizes (align_corners=False, no antialiasing):
//   256×256 → 1024×1024 (stage 1),  crop [:H', :W'],  → H×W (stage 2)
// where H'×W' is the crop's size inside the model's 1024 square. Resizing 256 → H×W directly,
// or cropping the low-res mask first, moves boundaries (sam-spec §6).
//
// How torch computes one bilinear resize (aten/src/ATen/native/cpu/UpSampleKernel.cpp, the
// generic kernel it uses for masks):
// - per output index d of an axis, in float32: src = scale·(d + 0.5) − 0.5 with
//   scale = in/out, clamped at 0; i0 = floor(src), i1 = i0 + 1 (clamped to the last input),
//   λ1 = src − i0, λ0 = 1 − λ1. An axis that keeps its size is copied.
// - per output pixel: t_y = x-interpolation of input row y, out = t_y0·λ0 + t_y1·λ1 (x first,
//   then y), float32 throughout. The compiler fuses a·b + c·d into fma(a, b, c·d), so we
//   compute a·b + round32(c·d) in float64 and round once to float32: identical, except when the
//   float64 sum itself rounds (a last-bit difference in perhaps 1 operation in 10^8).
// Matching that arithmetic makes our logits equal to torch's (x86 CPU with AVX2/AVX-512, more than
// one torch thread: with one thread and 3 masks per call torch switches to a channels-last kernel
// that rounds differently, as do CUDA and ONNX Runtime's Resize, by a float32 ulp or so).
//
// Speed: both resizes are separable, so each is an x pass and a y pass with index/weight tables
// computed once per crop size (a `MaskUpsamplePlan`) and reused for every mask of the crop.
// Stage 1 is evaluated only at the 1024-grid rows and columns that stage 2 reads, which for a
// crop smaller than 1024 px is about half of them. We do not fuse the two stages into one
// resize of 3–4 taps per axis: that needs as many multiply-adds (it measured slower), and it
// changes logits by up to ~2e-6, losing the exact match (test/unit/amg-mask-upsample.test.ts).
// For the AMG's filters, `upsampleAndBinarize` also skips every output pixel whose low-res
// inputs are all too negative to reach a threshold, which for most masks is most of the crop.
import { getPreprocessShape } from '../sam/resize-longest-side.ts';
import type { Box, MaskGrid, MaskOrder } from './types.ts';

/** Side of the decoder's low-res logits. */
export const LOW_RES_SIZE = 256;
/** Side of the model input square (`image_encoder.img_size`). */
export const MODEL_INPUT_SIZE = 1024;

/** Linear interpolation taps along one axis: out[d] = in[i0[d]]·w0[d] + in[i1[d]]·w1[d]. */
export interface Taps {
  size: number;
  i0: Int32Array;
  i1: Int32Array;
  w0: Float32Array;
  w1: Float32Array;
}

/**
 * The tables of the four 1-D passes for one crop size, plus scratch buffers that every mask
 * upsampled with the plan reuses (so one plan serves one mask at a time).
 */
export interface MaskUpsamplePlan {
  /** The output (crop) size. */
  h: number;
  w: number;
  /** [H', W']: the crop's size inside the model's 1024×1024 input. */
  inputSize: [number, number];
  /** Stage 1 at the needed 1024-grid columns / rows, indices into the 256 grid. */
  readonly cols1: Taps;
  readonly rows1: Taps;
  /**
   * Stage 2 per output column / row, indexing the compacted stage-1 outputs; null where the axis
   * keeps its size (a crop whose side is already 1024).
   */
  readonly cols2: Taps | null;
  readonly rows2: Taps | null;
  readonly scratch: Float32Array[];
}

/**
 * Precomputes the tables that take 256×256 logits to an h×w crop (h, w = the crop's size, i.e.
 * the `orig_im_size` given to the decoder).
 */
export function planMaskUpsample(h: number, w: number): MaskUpsamplePlan {
  const [inH, inW] = getPreprocessShape(h, w, MODEL_INPUT_SIZE);
  const [rows1, rows2] = axisTaps(inH, h);
  const [cols1, cols2] = axisTaps(inW, w);
  const nR = rows1.size;
  const nC = cols1.size;
  // Largest intermediates: stage-1 x pass (256 × nC), stage 1 (nR × nC), stage-2 x pass (nR × w).
  const scratch = [
    new Float32Array(LOW_RES_SIZE * LOW_RES_SIZE),
    new Float32Array(LOW_RES_SIZE * nC),
    new Float32Array(nR * nC),
    new Float32Array(nR * w),
  ];
  return { h, w, inputSize: [inH, inW], cols1, rows1, cols2, rows2, scratch };
}

/**
 * Sam.postprocess_masks for one mask: 256×256 row-major logits (e.g. a subarray of the decoder's
 * `low_res_masks`) → h×w logits, in `order` (column-major is the order RLE encoding walks; both
 * take about as long). Threshold the result at > 0 for the mask. Writes into `out` when given
 * (length h·w).
 */
export function upsampleMaskLogits(
  lowRes: Float32Array,
  plan: MaskUpsamplePlan,
  order: MaskOrder = 'row-major',
  out?: Float32Array,
): MaskGrid<Float32Array> {
  const { h, w, cols1, rows1, cols2, rows2, scratch } = plan;
  const [tmp0, tmp1, tmp2, tmp3] = scratch as [Float32Array, Float32Array, Float32Array, Float32Array];
  const nR = rows1.size;
  const nC = cols1.size;
  const result = out ?? new Float32Array(h * w);
  if (result.length !== h * w) throw new RangeError(`out has ${result.length} values, expected ${h}×${w}`);
  checkLowRes(lowRes);
  // Buffer shapes in the comments (rows × row length).
  if (order === 'row-major') {
    alongRows(lowRes, LOW_RES_SIZE, [0, LOW_RES_SIZE], cols1, [0, nC], tmp1); // 256 × nC
    acrossRows(tmp1, nC, [0, nC], rows1, [0, nR], tmp2); // nR × nC
    const stage2x = cols2 ? (alongRows(tmp2, nC, [0, nR], cols2, [0, w], tmp3), tmp3) : tmp2; // nR × w
    if (rows2)
      acrossRows(stage2x, w, [0, w], rows2, [0, h], result); // h × w
    else result.set(stage2x.subarray(0, h * w));
  } else {
    // The same passes in the same order on the transposed input: every x pass now runs across
    // rows of the transposed buffers, and every y pass along them.
    transpose256(lowRes, tmp0); // 256 (x) × 256 (y)
    acrossRows(tmp0, LOW_RES_SIZE, [0, LOW_RES_SIZE], cols1, [0, nC], tmp1); // nC × 256
    alongRows(tmp1, LOW_RES_SIZE, [0, nC], rows1, [0, nR], tmp2); // nC × nR
    const stage2x = cols2 ? (acrossRows(tmp2, nR, [0, nR], cols2, [0, w], tmp3), tmp3) : tmp2; // w × nR
    if (rows2)
      alongRows(stage2x, nR, [0, w], rows2, [0, h], result); // w × h
    else result.set(stage2x.subarray(0, h * w));
  }
  return { data: result, h, w, order };
}

/** What the AMG's filters need from one mask: the binary mask and the stability counts. */
export interface BinarizedMask {
  /** Row-major 0/1 bytes: logit > 0 (SAM's mask_threshold). */
  mask: MaskGrid<Uint8Array>;
  /** #{logit > +offset}: the stability score's numerator ("intersections"). */
  intersections: number;
  /** #{logit > −offset}: its denominator ("unions"). */
  unions: number;
  /**
   * Inclusive [x0, y0, x1, y1] outside which every logit is below all thresholds (so the mask is
   * 0 there and nothing is counted); null when that holds everywhere.
   */
  window: Box | null;
}

/**
 * What `_process_batch` computes from the upsampled logits (the binary mask at > 0 and the two
 * stability counts), without storing the logits, and computing them only where they can matter:
 *
 * A logit is a weighted average of low-res logits (weights ≥ 0 summing to 1), evaluated with 8
 * float32 roundings, so it is at most m·(1 − 12·2⁻²⁴) when all of its low-res inputs are ≤ m < 0.
 * Low-res logits ≤ `coldBound(offset)` (the lowest threshold minus a 1e-3 margin) therefore
 * cannot lift any pixel above a threshold. We find the box of the other low-res samples, and
 * compute only the output pixels that read from it; the rest are 0 and count for nothing.
 * Inside that window every value is computed exactly as `upsampleMaskLogits` computes it. A
 * typical SAM mask covers a fraction of its crop, so this skips most of the work.
 */
export function upsampleAndBinarize(
  lowRes: Float32Array,
  plan: MaskUpsamplePlan,
  stabilityOffset = 1.0,
  out?: Uint8Array,
): BinarizedMask {
  const { h, w, cols1, rows1, cols2, rows2, scratch } = plan;
  const [, tmp1, tmp2, tmp3] = scratch as [Float32Array, Float32Array, Float32Array, Float32Array];
  const mask = out ?? new Uint8Array(h * w);
  if (mask.length !== h * w) throw new RangeError(`out has ${mask.length} values, expected ${h}×${w}`);
  checkLowRes(lowRes);
  mask.fill(0);
  const grid: MaskGrid<Uint8Array> = { data: mask, h, w, order: 'row-major' };
  const hot = warmBox(lowRes, coldBound(stabilityOffset));
  const ys = hot && outputsReading(rows1, rows2, h, hot[1], hot[3]);
  const xs = hot && outputsReading(cols1, cols2, w, hot[0], hot[2]);
  if (!ys || !xs) return { mask: grid, intersections: 0, unions: 0, window: null };

  const Y = inputSpans(rows1, rows2, ys);
  const X = inputSpans(cols1, cols2, xs);
  const nC = cols1.size;
  alongRows(lowRes, LOW_RES_SIZE, Y.stage1, cols1, X.stage2, tmp1); // 256 × nC
  acrossRows(tmp1, nC, X.stage2, rows1, Y.stage2, tmp2); // nR × nC
  const stage2x = cols2 ? (alongRows(tmp2, nC, Y.stage2, cols2, xs, tmp3), tmp3) : tmp2; // nR × w
  // The official code compares float32 logits with the thresholds as float32 scalars.
  const high = Math.fround(0 + stabilityOffset);
  const low = Math.fround(0 - stabilityOffset);
  const counts = rows2
    ? acrossRowsBinarize(stage2x, w, xs, rows2, ys, high, low, mask)
    : binarize(stage2x, w, xs, ys, high, low, mask);
  return { mask: grid, ...counts, window: [xs[0], ys[0], xs[1] - 1, ys[1] - 1] };
}

function checkLowRes(lowRes: Float32Array): void {
  if (lowRes.length !== LOW_RES_SIZE * LOW_RES_SIZE) {
    throw new RangeError(
      `low-res logits must be ${LOW_RES_SIZE}×${LOW_RES_SIZE}, got ${lowRes.length} values`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Windows: which outputs can be above a threshold, and which inputs they read
// ---------------------------------------------------------------------------------------------

/** A half-open range [start, end) of rows, columns or tap positions. */
type Span = [number, number];

/** The low-res value at or below which a sample cannot lift an output above any threshold. */
export function coldBound(stabilityOffset: number): number {
  const lowest = Math.min(0, -stabilityOffset, stabilityOffset);
  return lowest - 1e-3 * Math.max(1, Math.abs(lowest));
}

/** Inclusive [x0, y0, x1, y1] of the low-res samples that are not ≤ cold (NaN included), or null. */
function warmBox(lowRes: Float32Array, cold: number): Box | null {
  let x0 = LOW_RES_SIZE;
  let y0 = LOW_RES_SIZE;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < LOW_RES_SIZE; y++) {
    const row = y * LOW_RES_SIZE;
    let first = 0;
    while (first < LOW_RES_SIZE && lowRes[row + first]! <= cold) first++;
    if (first === LOW_RES_SIZE) continue;
    let last = LOW_RES_SIZE - 1;
    while (lowRes[row + last]! <= cold) last--;
    if (y0 === LOW_RES_SIZE) y0 = y;
    y1 = y;
    x0 = Math.min(x0, first);
    x1 = Math.max(x1, last);
  }
  return y1 < 0 ? null : [x0, y0, x1, y1];
}

/**
 * The outputs of one axis that read any low-res index in [lo, hi] through the two stages (taps
 * with zero weight included), as a span; null if none. The taps are monotone, so they are
 * contiguous.
 */
function outputsReading(
  stage1: Taps,
  stage2: Taps | null,
  size: number,
  lo: number,
  hi: number,
): Span | null {
  const reads = (j: number) => {
    const a = stage1.i0[j]!;
    const b = stage1.i1[j]!;
    return (a >= lo && a <= hi) || (b >= lo && b <= hi);
  };
  let first = -1;
  let last = -1;
  for (let d = 0; d < size; d++) {
    const hit = stage2 ? reads(stage2.i0[d]!) || reads(stage2.i1[d]!) : reads(d);
    if (hit) {
      if (first < 0) first = d;
      last = d;
    }
  }
  return first < 0 ? null : [first, last + 1];
}

/** For outputs `out` of one axis: the stage-2 tap positions they read and the low-res indices those read. */
function inputSpans(stage1: Taps, stage2: Taps | null, out: Span): { stage2: Span; stage1: Span } {
  const mid: Span = stage2 ? [stage2.i0[out[0]]!, stage2.i1[out[1] - 1]! + 1] : out;
  return { stage2: mid, stage1: [stage1.i0[mid[0]]!, stage1.i1[mid[1] - 1]! + 1] };
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/**
 * The taps of one axis for the two stages: 256 → 1024 cropped to `inSize`, then → `outSize`.
 * Stage 1 is restricted to the 1024-grid positions that stage 2 reads, and stage 2's indices
 * point into that compacted list. Stage 2 is null when inSize = outSize (torch copies).
 */
function axisTaps(inSize: number, outSize: number): [Taps, Taps | null] {
  const stage2 = inSize === outSize ? null : linearTaps(inSize, outSize);
  const used = new Uint8Array(inSize);
  if (stage2) {
    for (let d = 0; d < outSize; d++) used[stage2.i0[d]!] = used[stage2.i1[d]!] = 1;
  } else used.fill(1);
  const compact = new Int32Array(inSize).fill(-1);
  const positions: number[] = [];
  used.forEach((u, p) => {
    if (u) compact[p] = positions.push(p) - 1;
  });
  const full1 = linearTaps(LOW_RES_SIZE, MODEL_INPUT_SIZE);
  const stage1 = selectTaps(full1, positions);
  if (stage2) {
    for (let d = 0; d < outSize; d++) {
      stage2.i0[d] = compact[stage2.i0[d]!]!;
      stage2.i1[d] = compact[stage2.i1[d]!]!;
    }
  }
  return [stage1, stage2];
}

/** torch's indices and weights for resizing one axis from inSize to outSize (see the header). */
export function linearTaps(inSize: number, outSize: number): Taps {
  const taps: Taps = {
    size: outSize,
    i0: new Int32Array(outSize),
    i1: new Int32Array(outSize),
    w0: new Float32Array(outSize),
    w1: new Float32Array(outSize),
  };
  const f = Math.fround;
  const scale = f(inSize / outSize); // float(in) / out, in float32
  for (let d = 0; d < outSize; d++) {
    if (inSize === outSize) {
      taps.i0[d] = taps.i1[d] = d;
      taps.w0[d] = 1;
      continue;
    }
    let src = f(f(scale * f(d + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const i0 = Math.min(Math.floor(src), inSize - 1);
    const lambda1 = Math.min(Math.max(f(src - i0), 0), 1);
    taps.i0[d] = i0;
    taps.i1[d] = i0 < inSize - 1 ? i0 + 1 : i0;
    taps.w1[d] = lambda1;
    taps.w0[d] = f(1 - lambda1);
  }
  return taps;
}

/** The taps at the given output positions only. */
function selectTaps(taps: Taps, positions: number[]): Taps {
  const n = positions.length;
  const picked: Taps = {
    size: n,
    i0: new Int32Array(n),
    i1: new Int32Array(n),
    w0: new Float32Array(n),
    w1: new Float32Array(n),
  };
  positions.forEach((p, k) => {
    picked.i0[k] = taps.i0[p]!;
    picked.i1[k] = taps.i1[p]!;
    picked.w0[k] = taps.w0[p]!;
    picked.w1[k] = taps.w1[p]!;
  });
  return picked;
}

// ---------------------------------------------------------------------------------------------
// 1-D passes, each out = a·w0 + round32(b·w1) rounded to float32 (see the header)
// ---------------------------------------------------------------------------------------------

/**
 * Interpolates along rows `rows` of `rowLength` values each, writing outputs `out` of each row
 * (dst rows are taps.size long). Four rows at a time, so each tap's index and weights are loaded
 * once per four outputs (about twice as fast as one row at a time).
 */
function alongRows(
  src: Float32Array,
  rowLength: number,
  rows: Span,
  taps: Taps,
  out: Span,
  dst: Float32Array,
): void {
  const { size, i0, i1, w0, w1 } = taps;
  const f = Math.fround;
  const [dStart, dEnd] = out;
  let r = rows[0];
  for (; r + 4 <= rows[1]; r += 4) {
    const s0 = r * rowLength;
    const s1 = s0 + rowLength;
    const s2 = s1 + rowLength;
    const s3 = s2 + rowLength;
    const o0 = r * size;
    const o1 = o0 + size;
    const o2 = o1 + size;
    const o3 = o2 + size;
    for (let d = dStart; d < dEnd; d++) {
      const a = i0[d]!;
      const b = i1[d]!;
      const wa = w0[d]!;
      const wb = w1[d]!;
      dst[o0 + d] = src[s0 + a]! * wa + f(src[s0 + b]! * wb);
      dst[o1 + d] = src[s1 + a]! * wa + f(src[s1 + b]! * wb);
      dst[o2 + d] = src[s2 + a]! * wa + f(src[s2 + b]! * wb);
      dst[o3 + d] = src[s3 + a]! * wa + f(src[s3 + b]! * wb);
    }
  }
  for (; r < rows[1]; r++) {
    const s = r * rowLength;
    const o = r * size;
    for (let d = dStart; d < dEnd; d++) dst[o + d] = src[s + i0[d]!]! * w0[d]! + f(src[s + i1[d]!]! * w1[d]!);
  }
}

/**
 * Interpolates across rows of `rowLength` values: output row d (for d in `out`) mixes src rows
 * i0[d] and i1[d], over the columns `cols`.
 */
function acrossRows(
  src: Float32Array,
  rowLength: number,
  cols: Span,
  taps: Taps,
  out: Span,
  dst: Float32Array,
): void {
  const { i0, i1, w0, w1 } = taps;
  const f = Math.fround;
  const [xStart, xEnd] = cols;
  for (let d = out[0]; d < out[1]; d++) {
    const a = i0[d]! * rowLength;
    const b = i1[d]! * rowLength;
    const wa = w0[d]!;
    const wb = w1[d]!;
    const o = d * rowLength;
    for (let x = xStart; x < xEnd; x++) dst[o + x] = src[a + x]! * wa + f(src[b + x]! * wb);
  }
}

interface StabilityCounts {
  intersections: number;
  unions: number;
}

/** acrossRows, but each value is thresholded instead of stored: 0/1 at > 0, and the two counts. */
function acrossRowsBinarize(
  src: Float32Array,
  rowLength: number,
  cols: Span,
  taps: Taps,
  out: Span,
  high: number,
  low: number,
  dst: Uint8Array,
): StabilityCounts {
  const { i0, i1, w0, w1 } = taps;
  const f = Math.fround;
  const [xStart, xEnd] = cols;
  let intersections = 0;
  let unions = 0;
  for (let d = out[0]; d < out[1]; d++) {
    const a = i0[d]! * rowLength;
    const b = i1[d]! * rowLength;
    const wa = w0[d]!;
    const wb = w1[d]!;
    const o = d * rowLength;
    for (let x = xStart; x < xEnd; x++) {
      const v = f(src[a + x]! * wa + f(src[b + x]! * wb));
      if (v > low) unions++;
      if (v > high) intersections++;
      dst[o + x] = v > 0 ? 1 : 0;
    }
  }
  return { intersections, unions };
}

/** The thresholds of acrossRowsBinarize on values already computed (stage 2 was a copy). */
function binarize(
  src: Float32Array,
  rowLength: number,
  cols: Span,
  rows: Span,
  high: number,
  low: number,
  dst: Uint8Array,
): StabilityCounts {
  let intersections = 0;
  let unions = 0;
  for (let y = rows[0]; y < rows[1]; y++) {
    for (let i = y * rowLength + cols[0]; i < y * rowLength + cols[1]; i++) {
      const v = src[i]!;
      if (v > low) unions++;
      if (v > high) intersections++;
      dst[i] = v > 0 ? 1 : 0;
    }
  }
  return { intersections, unions };
}

function transpose256(src: Float32Array, dst: Float32Array): void {
  const n = LOW_RES_SIZE;
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) dst[x * n + y] = src[y * n + x]!;
}
