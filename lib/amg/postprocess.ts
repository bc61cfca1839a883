// The AMG's last steps (sam-spec §3 steps 6–7): NMS between crops, then the optional clean-up of
// small regions (`postprocess_small_regions` / `remove_small_regions`), then the paper's
// coverage filter.
//
// remove_small_regions labels connected components with OpenCV (8-connectivity) on the decoded
// mask. We label them on the RLE instead: a mask's runs, cut at column boundaries, are vertical
// segments, and two segments in neighbouring columns touch (8-connectivity) when their row
// ranges overlap or meet diagonally. That is a few thousand segments instead of millions of
// pixels, and the result is the same set of components with the same sizes.
import { RleBuilder, type Rle } from '../rle.ts';
import { exceedsCoverage, rleBox } from './mask-filters.ts';
import { batchedNms, nmsAcrossCrops } from './nms.ts';
import { DEFAULT_AMG_OPTIONS, type AmgOptions, type MaskCandidate } from './types.ts';

export type RegionMode = 'holes' | 'islands';

export interface RegionResult {
  rle: Rle;
  /** Whether any region was below the threshold (the official flag; see removeSmallRegions). */
  changed: boolean;
  /** Size of the largest region considered (islands: the largest island; 0 for none). */
  largestArea: number;
}

/**
 * remove_small_regions(mask, areaThresh, mode), on an RLE:
 * - 'holes': fill every background component (of the inverted mask, 8-connected) smaller than
 *   areaThresh, including background touching the border;
 * - 'islands': remove every foreground component smaller than areaThresh; if all of them are,
 *   keep the largest (ties go to the one OpenCV labels first).
 * `changed` is the official flag: true whenever some region was small, even when keeping the
 * largest of them leaves the mask as it was (a single small island).
 */
export function removeSmallRegions(rle: Rle, areaThresh: number, mode: RegionMode): RegionResult {
  const segments = columnSegments(rle);
  const value = mode === 'holes' ? 0 : 1; // the pixels whose components we look at
  const components = labelComponents(segments, value);
  const { sizes } = components;
  let largestArea = 0;
  for (const s of sizes) largestArea = Math.max(largestArea, s);
  const small = sizes.map((s) => s < areaThresh);
  if (!small.includes(true)) return { rle, changed: false, largestArea };

  // Which components end up as foreground: the small holes get filled; the big islands stay,
  // or the largest one when none is big.
  const foreground = mode === 'holes' ? small : small.map((s) => !s);
  if (mode === 'islands' && !foreground.includes(true)) foreground[firstLabelOfLargest(components)] = true;
  return { rle: rebuild(rle, segments, components.labelOf, value, foreground), changed: true, largestArea };
}

// ---------------------------------------------------------------------------------------------
// Segments and components
// ---------------------------------------------------------------------------------------------

/** A mask's runs cut at column boundaries: segment s covers rows [top, top + length) of column col. */
interface Segments {
  count: number;
  value: Uint8Array;
  col: Int32Array;
  top: Int32Array;
  length: Int32Array;
}

function columnSegments(rle: Rle): Segments {
  const [h] = rle.size;
  let count = 0;
  forEachSegment(rle, () => count++);
  const s: Segments = {
    count,
    value: new Uint8Array(count),
    col: new Int32Array(count),
    top: new Int32Array(count),
    length: new Int32Array(count),
  };
  let k = 0;
  forEachSegment(rle, (value, position, length) => {
    s.value[k] = value;
    s.col[k] = Math.floor(position / h);
    s.top[k] = position % h;
    s.length[k] = length;
    k++;
  });
  return s;
}

/** Calls fn(value, start, length) for each piece of each run, cut where a column ends. */
function forEachSegment(rle: Rle, fn: (value: number, start: number, length: number) => void): void {
  const [h] = rle.size;
  let position = 0;
  rle.counts.forEach((count, j) => {
    const end = position + count;
    while (position < end) {
      const columnEnd = (Math.floor(position / h) + 1) * h;
      const pieceEnd = Math.min(end, columnEnd);
      fn(j % 2, position, pieceEnd - position);
      position = pieceEnd;
    }
  });
}

interface Components {
  /** Per segment: its component label (0, 1, ... in order of first segment), or −1 if not of `value`. */
  labelOf: Int32Array;
  /** Per label: pixel count. */
  sizes: number[];
  /** Per label: OpenCV's ordering key (see firstLabelOfLargest). */
  keys: number[];
}

/** 8-connected components of the segments of `value` (union-find over neighbouring columns). */
function labelComponents(s: Segments, value: number): Components {
  const parent = new Int32Array(s.count).map((_, i) => i);
  const find = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]!]!;
    return i;
  };
  const union = (i: number, j: number) => {
    const a = find(i);
    const b = find(j);
    if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
  };
  // Segments are in column-major order; walk each column against the previous one.
  let prevStart = 0; // first segment of the previous column
  let start = 0; // first segment of the current column
  while (start < s.count) {
    let end = start;
    while (end < s.count && s.col[end] === s.col[start]) end++;
    if (start > 0 && s.col[prevStart] === s.col[start]! - 1) {
      joinColumns(s, value, prevStart, start, start, end, union);
    }
    prevStart = start;
    start = end;
  }

  const labelOf = new Int32Array(s.count).fill(-1);
  const labelOfRoot = new Map<number, number>();
  const sizes: number[] = [];
  const keys: number[] = [];
  for (let i = 0; i < s.count; i++) {
    if (s.value[i] !== value) continue;
    const root = find(i);
    let label = labelOfRoot.get(root);
    if (label === undefined) {
      label = sizes.length;
      labelOfRoot.set(root, label);
      sizes.push(0);
      keys.push(Infinity);
    }
    labelOf[i] = label;
    sizes[label]! += s.length[i]!;
    keys[label] = Math.min(keys[label]!, blockKey(s.top[i]!, s.col[i]!));
  }
  return { labelOf, sizes, keys };
}

/**
 * Unions the segments of `value` in two neighbouring columns that touch: rows [a0, a1] and
 * [b0, b1] are 8-connected when a0 ≤ b1 + 1 and b0 ≤ a1 + 1. Both lists are sorted by row.
 */
function joinColumns(
  s: Segments,
  value: number,
  i: number,
  iEnd: number,
  j: number,
  jEnd: number,
  union: (i: number, j: number) => void,
): void {
  while (i < iEnd && j < jEnd) {
    if (s.value[i] !== value) {
      i++;
      continue;
    }
    if (s.value[j] !== value) {
      j++;
      continue;
    }
    const aTop = s.top[i]!;
    const aBottom = aTop + s.length[i]! - 1;
    const bTop = s.top[j]!;
    const bBottom = bTop + s.length[j]! - 1;
    if (aTop <= bBottom + 1 && bTop <= aBottom + 1) union(i, j);
    // Advance whichever segment ends first; the other may still touch the next one.
    if (aBottom < bBottom) i++;
    else j++;
  }
}

/**
 * Where OpenCV's labelling (a 2×2-block scan, also in its parallel version) first meets a
 * component: its labels are numbered in order of the first 2×2 block, in row-major block order,
 * that holds one of its pixels. Two components never share a block (the pixels of a 2×2 block
 * are all 8-neighbours), so the keys differ. A segment's first block is the one of its top pixel.
 */
function blockKey(top: number, col: number): number {
  return Math.floor(top / 2) * 2 ** 26 + Math.floor(col / 2);
}

/** np.argmax(sizes) over OpenCV's labels: the largest component, the earliest-labelled on ties. */
function firstLabelOfLargest(c: Components): number {
  let best = -1;
  c.sizes.forEach((size, label) => {
    if (best < 0 || size > c.sizes[best]! || (size === c.sizes[best]! && c.keys[label]! < c.keys[best]!))
      best = label;
  });
  return best;
}

/** The new mask: segments of the other value stay as they are; components of `value` become foreground or not. */
function rebuild(rle: Rle, s: Segments, labelOf: Int32Array, value: number, foreground: boolean[]): Rle {
  const [h, w] = rle.size;
  const out = new RleBuilder(h, w);
  for (let i = 0; i < s.count; i++) {
    const on = s.value[i] === value ? foreground[labelOf[i]!]! : s.value[i] === 1;
    if (on) out.add(s.col[i]! * h + s.top[i]!, s.length[i]!);
  }
  return out.finish();
}

// ---------------------------------------------------------------------------------------------
// The image-level steps
// ---------------------------------------------------------------------------------------------

/**
 * postprocess_small_regions: fill small holes, then remove small islands, in every mask; masks
 * left unchanged score 1 and changed ones 0, and box NMS at `nmsThresh` removes the duplicates
 * this created (preferring unchanged masks). Changed masks that survive get their new RLE and
 * box; predicted IoU and stability are kept as they were.
 *
 * With `dropSmallMasks` (the paper's rule), a mask whose largest island is below minArea is
 * dropped before the NMS instead of being reduced to that island.
 */
export function postprocessSmallRegions(
  masks: readonly MaskCandidate[],
  minArea: number,
  nmsThresh: number,
  dropSmallMasks = false,
): MaskCandidate[] {
  const cleaned: MaskCandidate[] = [];
  const scores: number[] = [];
  for (const mask of masks) {
    const holes = removeSmallRegions(mask.rle, minArea, 'holes');
    const islands = removeSmallRegions(holes.rle, minArea, 'islands');
    if (dropSmallMasks && islands.largestArea < minArea) continue;
    const changed = holes.changed || islands.changed;
    cleaned.push(changed ? { ...mask, rle: islands.rle, box: rleBox(islands.rle) } : mask);
    scores.push(changed ? 0 : 1);
  }
  const keep = batchedNms(
    cleaned.map((m) => m.box),
    scores,
    nmsThresh,
  );
  return keep.map((i) => cleaned[i]!);
}

/**
 * Everything after the per-crop work, in the official order: NMS between crops (when there is
 * more than one), small-region postprocessing (when minMaskRegionArea > 0), then the paper's
 * coverage filter (when maxMaskCoverage < 1). `perCrop` holds each crop's masks after its own
 * NMS (`nmsWithinCrop`), crops in `generateCropBoxes` order.
 */
export function finishMasks(
  perCrop: readonly (readonly MaskCandidate[])[],
  options: Partial<AmgOptions> = {},
): MaskCandidate[] {
  const opts = { ...DEFAULT_AMG_OPTIONS, ...options };
  let masks = perCrop.flat();
  if (perCrop.length > 1) masks = nmsAcrossCrops(masks, opts.cropNmsThresh);
  if (opts.minMaskRegionArea > 0) {
    const nmsThresh = Math.max(opts.boxNmsThresh, opts.cropNmsThresh);
    masks = postprocessSmallRegions(masks, opts.minMaskRegionArea, nmsThresh, opts.dropSmallMasks);
  }
  if (opts.maxMaskCoverage < 1) masks = masks.filter((m) => !exceedsCoverage(m.rle, opts.maxMaskCoverage));
  return masks;
}
