// Greedy box non-maximum suppression as torchvision runs it on the CPU (sam-spec §3 steps 5–6).
//
// torchvision.ops.nms (csrc/ops/cpu/nms_kernel.cpp), in float32:
// - area = (x1 − x0)·(y1 − y0), no +1, although the AMG's mask boxes have inclusive ends;
// - visit boxes by descending score, ties in input order (a stable sort);
// - a kept box suppresses every later box whose IoU with it is > threshold (strict; the float32
//   IoU is compared with the threshold as a double).
// torchvision.ops.batched_nms, which the AMG calls, adds one twist on the CPU: above 1000 boxes it
// runs nms per category and then re-sorts the kept indices by score with torch's *unstable* sort
// (libstdc++ std::sort). The kept set is the same, but masks with equal scores come out in
// another order, and the AMG feeds that order into its later NMS rounds. `batchedNms` repeats it.
import type { Box, MaskCandidate } from './types.ts';

const f32 = Math.fround;

/** Above this many boxes torchvision's batched_nms takes its per-category path on the CPU. */
export const BATCHED_NMS_VANILLA_ABOVE = 1000;

/** torchvision.ops.nms: the indices of the kept boxes, by descending score. */
export function nms(boxes: readonly Box[], scores: ArrayLike<number>, iouThreshold: number): number[] {
  checkLengths(boxes, scores);
  const areas = boxes.map(([x0, y0, x1, y1]) => f32(f32(x1 - x0) * f32(y1 - y0)));
  const order = stableOrderDescending(scores);
  const suppressed = new Uint8Array(boxes.length);
  const keep: number[] = [];
  for (let a = 0; a < order.length; a++) {
    const i = order[a]!;
    if (suppressed[i]) continue;
    keep.push(i);
    for (let b = a + 1; b < order.length; b++) {
      const j = order[b]!;
      if (!suppressed[j] && boxIou(boxes[i]!, areas[i]!, boxes[j]!, areas[j]!) > iouThreshold)
        suppressed[j] = 1;
    }
  }
  return keep;
}

/** IoU of two boxes in torchvision's float32 arithmetic. */
function boxIou(a: Box, areaA: number, b: Box, areaB: number): number {
  const w = Math.max(0, f32(Math.min(a[2], b[2]) - Math.max(a[0], b[0])));
  const h = Math.max(0, f32(Math.min(a[3], b[3]) - Math.max(a[1], b[1])));
  const inter = f32(w * h);
  return f32(inter / f32(f32(areaA + areaB) - inter));
}

/**
 * torchvision.ops.batched_nms with a single category (how the AMG calls it): nms, except that
 * above 1000 boxes the kept indices are re-sorted by score with torch's unstable sort.
 */
export function batchedNms(boxes: readonly Box[], scores: ArrayLike<number>, iouThreshold: number): number[] {
  const keep = nms(boxes, scores, iouThreshold);
  if (boxes.length <= BATCHED_NMS_VANILLA_ABOVE) return keep;
  // _batched_nms_vanilla: keep_indices = where(keep_mask) (ascending), then
  // keep_indices[scores[keep_indices].sort(descending=True)[1]].
  const ascending = keep.slice().sort((p, q) => p - q);
  const order = torchSortDescending(ascending.map((i) => scores[i]!));
  return order.map((k) => ascending[k]!);
}

/** The in-crop NMS: scores are the predicted IoUs. Returns the kept masks in NMS order. */
export function nmsWithinCrop(masks: readonly MaskCandidate[], iouThreshold: number): MaskCandidate[] {
  const keep = batchedNms(
    masks.map((m) => m.box),
    masks.map((m) => m.predictedIou),
    iouThreshold,
  );
  return keep.map((i) => masks[i]!);
}

/**
 * The NMS between crops (run only when there is more than one crop): the score is
 * 1 / area(crop box) in float32, so masks from smaller (more zoomed-in) crops win.
 */
export function nmsAcrossCrops(masks: readonly MaskCandidate[], iouThreshold: number): MaskCandidate[] {
  // box_area of the int64 crop boxes, then 1 / area in float32 (the area itself becomes float32).
  const scores = masks.map(({ cropBox: [x0, y0, x1, y1] }) => f32(1 / f32((x1 - x0) * (y1 - y0))));
  const keep = batchedNms(
    masks.map((m) => m.box),
    scores,
    iouThreshold,
  );
  return keep.map((i) => masks[i]!);
}

// ---------------------------------------------------------------------------------------------
// Sorting as torch does it
// ---------------------------------------------------------------------------------------------

/** Indices by descending score, equal scores in input order (torch.sort(stable=True)). */
function stableOrderDescending(scores: ArrayLike<number>): number[] {
  const order = Array.from({ length: scores.length }, (_, i) => i);
  return order.sort((i, j) => descending(scores[i]!, scores[j]!) || i - j);
}

/** Sort key of torch's descending sort: NaN first, then larger values. */
function descending(a: number, b: number): number {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) ? (Number.isNaN(b) ? 0 : -1) : 1;
  return b - a;
}

/**
 * torch.sort(values, descending=True)[1] on the CPU without stable=True: libstdc++'s std::sort
 * (introsort: median-of-three quicksort down to 16-element slices, heapsort past a depth limit,
 * then one insertion sort) on (value, index) pairs, comparing values only. Deterministic, but
 * equal values do not keep their order. Reproduced step for step, because that order is output.
 */
export function torchSortDescending(values: readonly number[]): number[] {
  const a = values.map((v, i) => ({ v, i }));
  // KeyValueCompDesc: NaN sorts first, then larger values.
  const less = (p: { v: number }, q: { v: number }) => (Number.isNaN(p.v) && !Number.isNaN(q.v)) || p.v > q.v;
  stdSort(a, less);
  return a.map((e) => e.i);
}

const INSERTION_SORT_THRESHOLD = 16;

/** libstdc++ std::sort (bits/stl_algo.h), in place. */
function stdSort<T>(a: T[], less: (p: T, q: T) => boolean): void {
  const n = a.length;
  if (n < 2) return;
  introsortLoop(a, 0, n, 2 * Math.floor(Math.log2(n)), less);
  // __final_insertion_sort
  if (n > INSERTION_SORT_THRESHOLD) {
    insertionSort(a, 0, INSERTION_SORT_THRESHOLD, less);
    for (let i = INSERTION_SORT_THRESHOLD; i < n; i++) unguardedLinearInsert(a, i, less);
  } else insertionSort(a, 0, n, less);
}

function introsortLoop<T>(
  a: T[],
  first: number,
  last: number,
  depth: number,
  less: (p: T, q: T) => boolean,
): void {
  while (last - first > INSERTION_SORT_THRESHOLD) {
    if (depth === 0) {
      heapSort(a, first, last, less);
      return;
    }
    depth--;
    // __unguarded_partition_pivot
    const mid = first + Math.floor((last - first) / 2);
    moveMedianToFirst(a, first, first + 1, mid, last - 1, less);
    const cut = unguardedPartition(a, first + 1, last, first, less);
    introsortLoop(a, cut, last, depth, less);
    last = cut;
  }
}

function moveMedianToFirst<T>(
  a: T[],
  result: number,
  x: number,
  y: number,
  z: number,
  less: (p: T, q: T) => boolean,
) {
  let pick: number;
  if (less(a[x]!, a[y]!)) {
    if (less(a[y]!, a[z]!)) pick = y;
    else if (less(a[x]!, a[z]!)) pick = z;
    else pick = x;
  } else if (less(a[x]!, a[z]!)) pick = x;
  else if (less(a[y]!, a[z]!)) pick = z;
  else pick = y;
  swap(a, result, pick);
}

function unguardedPartition<T>(
  a: T[],
  first: number,
  last: number,
  pivot: number,
  less: (p: T, q: T) => boolean,
) {
  for (;;) {
    while (less(a[first]!, a[pivot]!)) first++;
    last--;
    while (less(a[pivot]!, a[last]!)) last--;
    if (!(first < last)) return first;
    swap(a, first, last);
    first++;
  }
}

function insertionSort<T>(a: T[], first: number, last: number, less: (p: T, q: T) => boolean): void {
  for (let i = first + 1; i < last; i++) {
    if (less(a[i]!, a[first]!)) {
      const v = a[i]!;
      a.copyWithin(first + 1, first, i);
      a[first] = v;
    } else unguardedLinearInsert(a, i, less);
  }
}

function unguardedLinearInsert<T>(a: T[], last: number, less: (p: T, q: T) => boolean): void {
  const v = a[last]!;
  let next = last - 1;
  while (less(v, a[next]!)) {
    a[last] = a[next]!;
    last = next--;
  }
  a[last] = v;
}

/** std::partial_sort(first, last, last): make_heap, then pop every element. */
function heapSort<T>(a: T[], first: number, last: number, less: (p: T, q: T) => boolean): void {
  const len = last - first;
  for (let parent = Math.floor((len - 2) / 2); parent >= 0; parent--) {
    adjustHeap(a, first, parent, len, a[first + parent]!, less);
  }
  while (last - first > 1) {
    last--;
    const v = a[last]!;
    a[last] = a[first]!;
    adjustHeap(a, first, 0, last - first, v, less);
  }
}

function adjustHeap<T>(
  a: T[],
  first: number,
  hole: number,
  len: number,
  v: T,
  less: (p: T, q: T) => boolean,
) {
  const top = hole;
  let child = hole;
  while (child < Math.floor((len - 1) / 2)) {
    child = 2 * (child + 1);
    if (less(a[first + child]!, a[first + child - 1]!)) child--;
    a[first + hole] = a[first + child]!;
    hole = child;
  }
  if ((len & 1) === 0 && child === Math.floor((len - 2) / 2)) {
    child = 2 * (child + 1);
    a[first + hole] = a[first + child - 1]!;
    hole = child - 1;
  }
  // __push_heap
  let parent = Math.floor((hole - 1) / 2);
  while (hole > top && less(a[first + parent]!, v)) {
    a[first + hole] = a[first + parent]!;
    hole = parent;
    parent = Math.floor((hole - 1) / 2);
  }
  a[first + hole] = v;
}

function swap<T>(a: T[], i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}

function checkLengths(boxes: readonly Box[], scores: ArrayLike<number>): void {
  if (boxes.length !== scores.length)
    throw new RangeError(`${boxes.length} boxes but ${scores.length} scores`);
}
