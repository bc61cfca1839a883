// How a simulated annotator clicks, as interactive-segmentation benchmarks do (RITM's protocol, the
// one SAM's paper follows): the first click at the point of the object farthest from its border;
// each next click at the point farthest from the border of the larger error region — positive in a
// missed part of the object, negative in a wrongly covered part. "Farthest from the border" is the
// exact Euclidean distance transform, the image edge counting as border. The same protocol as the
// trainer's evaluation (trainer/sae_trainer/evaluate.py), so figures from either side compare.
//
// Masks are row-major h×w bytes (nonzero = on).

import { planMaskUpsample, upsampleMaskLogits } from '../amg/mask-upsample.ts';

export interface Click {
  x: number;
  y: number;
  /** true: a foreground click (label 1); false: background (label 0). */
  positive: boolean;
}

/**
 * The next click for an object `truth` given the current prediction (null before any click), or
 * null when the prediction is already exact.
 */
export function nextClick(
  truth: Uint8Array,
  prediction: Uint8Array | null,
  h: number,
  w: number,
): Click | null {
  const missed = new Uint8Array(h * w);
  const extra = new Uint8Array(h * w);
  for (let i = 0; i < h * w; i++) {
    const t = truth[i] !== 0;
    const p = prediction !== null && prediction[i] !== 0;
    if (t && !p) missed[i] = 1;
    if (p && !t) extra[i] = 1;
  }
  const inMissed = deepestPoint(missed, h, w);
  const inExtra = deepestPoint(extra, h, w);
  if (!inMissed && !inExtra) return null;
  const positive = (inMissed?.distance ?? 0) >= (inExtra?.distance ?? 0);
  const at = positive ? inMissed! : inExtra!;
  return { x: at.x, y: at.y, positive };
}

/** The pixel of `mask` farthest from its border (first in row-major order on ties), or null if empty. */
export function deepestPoint(
  mask: Uint8Array,
  h: number,
  w: number,
): { x: number; y: number; distance: number } | null {
  const squared = squaredDistanceToBorder(mask, h, w);
  let best = -1;
  let bestValue = 0;
  for (let i = 0; i < h * w; i++) {
    if (squared[i]! > bestValue) {
      bestValue = squared[i]!;
      best = i;
    }
  }
  if (best < 0) return null;
  return { x: best % w, y: Math.floor(best / w), distance: Math.sqrt(bestValue) };
}

/**
 * For each "on" pixel, the squared Euclidean distance to the nearest "off" pixel or to just outside
 * the image (0 for "off" pixels). Felzenszwalb and Huttenlocher's exact transform, columns then rows.
 */
export function squaredDistanceToBorder(mask: Uint8Array, h: number, w: number): Float64Array {
  // On a grid padded by one "off" pixel all round, so the image edge is border too.
  const H = h + 2;
  const W = w + 2;
  const grid = new Float64Array(H * W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const inside = y > 0 && y <= h && x > 0 && x <= w && mask[(y - 1) * w + (x - 1)] !== 0;
      grid[y * W + x] = inside ? Infinity : 0;
    }
  }
  const line = new Float64Array(Math.max(H, W));
  const out = new Float64Array(Math.max(H, W));
  for (let x = 0; x < W; x++) {
    for (let y = 0; y < H; y++) line[y] = grid[y * W + x]!;
    transform1d(line, H, out);
    for (let y = 0; y < H; y++) grid[y * W + x] = out[y]!;
  }
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) line[x] = grid[y * W + x]!;
    transform1d(line, W, out);
    for (let x = 0; x < W; x++) grid[y * W + x] = out[x]!;
  }
  const result = new Float64Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) result[y * w + x] = grid[(y + 1) * W + (x + 1)]!;
  return result;
}

/** One-dimensional squared distance transform of f[0..n) (lower envelope of parabolas). */
function transform1d(f: Float64Array, n: number, d: Float64Array): void {
  const v = new Int32Array(n);
  const z = new Float64Array(n + 1);
  let k = 0;
  // The first finite sample starts the envelope; an all-infinite line stays infinite.
  let first = 0;
  while (first < n && f[first] === Infinity) first++;
  if (first === n) {
    for (let q = 0; q < n; q++) d[q] = Infinity;
    return;
  }
  v[0] = first;
  z[0] = -Infinity;
  z[1] = Infinity;
  for (let q = first + 1; q < n; q++) {
    if (f[q] === Infinity) continue;
    let s = (f[q]! + q * q - (f[v[k]!]! + v[k]! * v[k]!)) / (2 * q - 2 * v[k]!);
    while (s <= z[k]!) {
      k--;
      s = (f[q]! + q * q - (f[v[k]!]! + v[k]! * v[k]!)) / (2 * q - 2 * v[k]!);
    }
    k++;
    v[k] = q;
    z[k] = s;
    z[k + 1] = Infinity;
  }
  k = 0;
  for (let q = 0; q < n; q++) {
    while (z[k + 1]! < q) k++;
    const dq = q - v[k]!;
    d[q] = dq * dq + f[v[k]!]!;
  }
}

export interface ClickLoopOptions {
  /** Stop once the mask reaches this IoU with the truth. */
  targetIou: number;
  /** Stop after this many clicks whatever the IoU. */
  maxClicks: number;
}

export interface ClickLoopResult {
  clicks: Click[];
  /** IoU with the truth after each click. */
  ious: number[];
  /** The last mask (row-major bytes at the image's size). */
  mask: Uint8Array;
}

/** What the loop needs of a SAM session: one prompt through the decoder. */
export interface ClickDecoder<E> {
  predict(
    embedding: E,
    prompt: { points: [number, number][]; labels: number[]; maskInput?: Float32Array },
    multimask: boolean,
  ): Promise<{ iouPredictions: number[]; lowResMasks: Float32Array[] }>;
}

/**
 * Clicks on one object until its mask is good enough or the budget is spent, as SAM's interactive
 * evaluation does: the first click takes the most confident of the 3 multimask outputs; later
 * clicks add to the points and feed back the previous low-resolution logits, single output.
 */
export async function clickUntil<E>(
  decoder: ClickDecoder<E>,
  embedding: E,
  truth: Uint8Array,
  h: number,
  w: number,
  opts: ClickLoopOptions,
): Promise<ClickLoopResult> {
  const result: ClickLoopResult = { clicks: [], ious: [], mask: new Uint8Array(h * w) };
  let previous: Float32Array | undefined;
  let prediction: Uint8Array | null = null;
  const upsample = planMaskUpsample(h, w);
  while (result.clicks.length < opts.maxClicks) {
    const click = nextClick(truth, prediction, h, w);
    if (!click) break;
    result.clicks.push(click);
    const first = result.clicks.length === 1;
    const out = await decoder.predict(
      embedding,
      {
        points: result.clicks.map((c) => [c.x, c.y]), // pixel indices, as the trainer's evaluation
        labels: result.clicks.map((c) => (c.positive ? 1 : 0)),
        ...(previous ? { maskInput: previous } : {}),
      },
      first,
    );
    const pick = first ? argmax(out.iouPredictions) : 0;
    previous = out.lowResMasks[pick]!;
    const logits = upsampleMaskLogits(previous, upsample).data;
    prediction = new Uint8Array(h * w);
    for (let i = 0; i < h * w; i++) prediction[i] = logits[i]! > 0 ? 1 : 0;
    result.mask = prediction;
    result.ious.push(maskIou(truth, prediction));
    if (result.ious.at(-1)! >= opts.targetIou) break;
  }
  return result;
}

export function maskIou(a: Uint8Array, b: Uint8Array): number {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] !== 0;
    const y = b[i] !== 0;
    if (x && y) inter += 1;
    if (x || y) union += 1;
  }
  return union === 0 ? 1 : inter / union;
}

function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
