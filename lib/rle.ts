// COCO run-length encoding (RLE) of binary masks, bit-compatible with pycocotools (sam-spec §3).
//
// A mask of size h×w is read in column-major (Fortran) order: down the first column, then the
// second, and so on. `counts` lists the lengths of alternating runs, always starting with a
// background (0) run, which may be empty: [[0,1,1],[0,1,0]] reads 0 0 1 1 1 0 → counts [2, 3, 1].
//
// Two forms travel around:
// - `Rle`      counts as numbers (what the AMG produces, cheap to compute with);
// - `CocoRle`  counts as the compact pycocotools string (what we store: SA-1B JSON, COCO files).
//
// Everything that can work on runs does (area, bbox, IoU, merge): decoding a 1500×2250 mask to
// compare two masks would cost millions of pixel reads where the runs need a few hundred steps.

/** Uncompressed RLE: `size` is [height, width]; counts alternate background/foreground runs. */
export interface Rle {
  size: [number, number];
  counts: number[];
}

/** Compressed RLE as pycocotools writes it (`rleToString`); the form stored in JSON files. */
export interface CocoRle {
  size: [number, number];
  counts: string;
}

/** A bounding box [x, y, width, height] in pixels. */
export type Bbox = [number, number, number, number];

// ---------------------------------------------------------------------------------------------
// Encoding and decoding
// ---------------------------------------------------------------------------------------------

/**
 * Encodes a row-major h×w mask (index y·w + x). A pixel is "on" when its value is greater than
 * `threshold`: 0 (the default) makes any nonzero byte on, and also binarises logits the way SAM
 * does (logit > 0), so the AMG can encode its output without building a byte mask first.
 */
export function encodeMask(mask: ArrayLike<number>, h: number, w: number, threshold = 0): Rle {
  checkSize(h, w);
  checkLength(mask.length, h, w);
  const runs = new RunBuilder();
  // Walk the columns in place instead of transposing the whole mask into a copy.
  for (let x = 0; x < w; x++) {
    for (let i = x; i < h * w; i += w) runs.push(mask[i]! > threshold);
  }
  return { size: [h, w], counts: runs.finish() };
}

/**
 * Encodes a column-major mask (index x·h + y), the layout the runs themselves use: the fastest
 * path, one sequential pass. Same `threshold` rule as `encodeMask`.
 */
export function encodeColumnMajor(data: ArrayLike<number>, h: number, w: number, threshold = 0): Rle {
  checkSize(h, w);
  checkLength(data.length, h, w);
  const runs = new RunBuilder();
  for (let i = 0; i < data.length; i++) runs.push(data[i]! > threshold);
  return { size: [h, w], counts: runs.finish() };
}

/** Decodes to a row-major h×w mask of 0/1 bytes (index y·w + x). */
export function decodeRle(rle: Rle): Uint8Array {
  checkRle(rle);
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  // (x, y) follow the column-major position; only foreground runs need to be written.
  let x = 0;
  let y = 0;
  rle.counts.forEach((count, j) => {
    const on = j % 2 === 1;
    if (!on) {
      // Skip a background run: jump whole columns at once.
      const pos = x * h + y + count;
      x = Math.floor(pos / h);
      y = pos - x * h;
      return;
    }
    for (let k = 0; k < count; k++) {
      out[y * w + x] = 1;
      if (++y === h) {
        y = 0;
        x++;
      }
    }
  });
  return out;
}

/** Decodes to a column-major mask of 0/1 bytes (index x·h + y), the cheap direction. */
export function decodeRleColumnMajor(rle: Rle): Uint8Array {
  checkRle(rle);
  const [h, w] = rle.size;
  const out = new Uint8Array(h * w);
  let pos = 0;
  rle.counts.forEach((count, j) => {
    if (j % 2 === 1) out.fill(1, pos, pos + count);
    pos += count;
  });
  return out;
}

/**
 * Builds an RLE from foreground runs given as column-major positions, in increasing order. For
 * producers that already know where the runs are (a renderer walking an owner map, an uncropped
 * mask shifted into the full image) and should not materialise a full h×w mask per object.
 */
export class RleBuilder {
  private readonly counts: number[] = [];
  private end = 0; // position just after the last foreground pixel added

  constructor(
    readonly h: number,
    readonly w: number,
  ) {
    checkSize(h, w);
  }

  /** Adds foreground pixels [start, start + length); touching runs are joined. */
  add(start: number, length = 1): void {
    if (length <= 0) return;
    if (start < this.end || start + length > this.h * this.w) {
      throw new Error(`run [${start}, ${start + length}) is out of order or outside the mask`);
    }
    const last = this.counts.length - 1;
    if (start === this.end && last >= 0) this.counts[last]! += length;
    else this.counts.push(start - this.end, length);
    this.end = start + length;
  }

  finish(): Rle {
    const rest = this.h * this.w - this.end;
    const counts = this.counts.length === 0 || rest > 0 ? [...this.counts, rest] : [...this.counts];
    return { size: [this.h, this.w], counts };
  }
}

/** Collects alternating run lengths from a stream of on/off pixels, starting with "off". */
class RunBuilder {
  private readonly counts: number[] = [];
  private current = false;
  private length = 0;

  push(on: boolean): void {
    if (on !== this.current) {
      this.counts.push(this.length);
      this.current = on;
      this.length = 0;
    }
    this.length++;
  }

  finish(): number[] {
    this.counts.push(this.length);
    return this.counts;
  }
}

// ---------------------------------------------------------------------------------------------
// COCO string compression (pycocotools rleToString / rleFrString)
// ---------------------------------------------------------------------------------------------
//
// Each count (from the fourth on, as a difference to the count two places back, which is the
// previous run of the same colour and so usually close) is written like LEB128 with 5 data bits
// per character: least significant group first, 0x20 set while more groups follow, bit 0x10 of
// the last group carrying the sign; each group is stored as the character (value + 48).
// Arithmetic uses plain numbers (floor division), not 32-bit bitwise operators, so counts of
// very large images cannot overflow.

/** Compresses counts into the pycocotools string form. */
export function compressRle(rle: Rle): CocoRle {
  checkRle(rle);
  const { counts } = rle;
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]!;
    if (i > 2) x -= counts[i - 2]!;
    let more = true;
    while (more) {
      let c = x & 0x1f; // the low 5 bits; `&` is exact here (two's complement of a safe integer)
      x = Math.floor(x / 32); // arithmetic shift right by 5
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return { size: [rle.size[0], rle.size[1]], counts: s };
}

/** Expands a pycocotools string back into counts; throws on a malformed string. */
export function decompressRle(coco: CocoRle): Rle {
  checkSize(coco.size[0], coco.size[1]);
  const s = coco.counts;
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let scale = 1; // 32^k, the weight of group k
    let more = true;
    while (more) {
      if (p >= s.length) throw new Error(`RLE string ends inside a count (at character ${p})`);
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`RLE string has an invalid character at ${p}: ${s[p]}`);
      x += (c & 0x1f) * scale;
      scale *= 32;
      more = (c & 0x20) !== 0;
      p++;
      if (!more && c & 0x10) x -= scale; // sign-extend: the value was negative
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  const rle: Rle = { size: [coco.size[0], coco.size[1]], counts };
  checkRle(rle);
  return rle;
}

/** Accepts either form and returns the uncompressed one. */
export function toRle(rle: Rle | CocoRle): Rle {
  return typeof rle.counts === 'string' ? decompressRle(rle as CocoRle) : (rle as Rle);
}

// ---------------------------------------------------------------------------------------------
// Measures on runs
// ---------------------------------------------------------------------------------------------

/** Number of foreground pixels: the sum of the odd-indexed counts. */
export function rleArea(rle: Rle): number {
  let area = 0;
  for (let j = 1; j < rle.counts.length; j += 2) area += rle.counts[j]!;
  return area;
}

/**
 * Bounding box [x, y, w, h] as pycocotools `toBbox` computes it: w and h are the pixel extent
 * (a single pixel gives w = h = 1); an empty mask gives [0, 0, 0, 0]. (The SAM AMG writes
 * boxes one smaller; see sam-spec §3 step 8. That convention belongs to the AMG, not here.)
 */
export function rleToBbox(rle: Rle): Bbox {
  const [h, w] = rle.size;
  const m = rle.counts.length - (rle.counts.length % 2); // a trailing background run adds nothing
  if (m === 0) return [0, 0, 0, 0];
  let xs = w;
  let ys = h;
  let xe = 0;
  let ye = 0;
  let cc = 0;
  let xStart = 0;
  for (let j = 0; j < m; j++) {
    cc += rle.counts[j]!;
    // Even j: cc is the first pixel of a foreground run; odd j: cc − 1 is its last pixel.
    const t = cc - (j % 2);
    const y = t % h;
    const x = (t - y) / h;
    if (j % 2 === 0) xStart = x;
    else if (xStart < x) {
      // The run wraps past the bottom of a column, so it covers every row.
      ys = 0;
      ye = h - 1;
    }
    xs = Math.min(xs, x);
    xe = Math.max(xe, x);
    ys = Math.min(ys, y);
    ye = Math.max(ye, y);
  }
  return [xs, ys, xe - xs + 1, ye - ys + 1];
}

/** Intersection-over-union of two boxes; with `crowd`, intersection over the area of `dt`. */
function bboxIou(dt: Bbox, gt: Bbox, crowd: boolean): number {
  const w = Math.min(dt[0] + dt[2], gt[0] + gt[2]) - Math.max(dt[0], gt[0]);
  if (w <= 0) return 0;
  const h = Math.min(dt[1] + dt[3], gt[1] + gt[3]) - Math.max(dt[1], gt[1]);
  if (h <= 0) return 0;
  const inter = w * h;
  const dtArea = dt[2] * dt[3];
  return inter / (crowd ? dtArea : dtArea + gt[2] * gt[3] - inter);
}

/** Pixel counts of the intersection and union of two same-size masks, walking both runs at once. */
function intersectionAndUnion(a: Rle, b: Rle): { intersection: number; union: number } {
  const ac = a.counts;
  const bc = b.counts;
  let ia = 1; // index of the next run to load
  let ib = 1;
  let ra = ac[0] ?? 0; // pixels left in the current run
  let rb = bc[0] ?? 0;
  let onA = false;
  let onB = false;
  let intersection = 0;
  let union = 0;
  let left = 1; // pixels left in both masks; stops the walk
  while (left > 0) {
    const step = Math.min(ra, rb);
    if (onA || onB) {
      union += step;
      if (onA && onB) intersection += step;
    }
    ra -= step;
    if (ra === 0 && ia < ac.length) {
      ra = ac[ia++]!;
      onA = !onA;
    }
    rb -= step;
    if (rb === 0 && ib < bc.length) {
      rb = bc[ib++]!;
      onB = !onB;
    }
    left = ra + rb;
  }
  return { intersection, union };
}

/**
 * IoU of a detection `dt` against a ground truth `gt`, as pycocotools `maskUtils.iou`: with
 * `iscrowd`, the denominator is the area of `dt` alone (how much of dt falls inside the crowd).
 * Masks that do not touch give 0. Unlike pycocotools (which returns −1, and only when the boxes
 * overlap), masks of different sizes throw.
 */
export function rleIou(dt: Rle, gt: Rle, iscrowd = false): number {
  checkSameSize(dt, gt);
  return iouWithBoxes(dt, rleToBbox(dt), gt, rleToBbox(gt), iscrowd);
}

function iouWithBoxes(dt: Rle, dtBox: Bbox, gt: Rle, gtBox: Bbox, crowd: boolean): number {
  // Boxes that do not overlap mean masks that do not overlap: skip the run walk.
  if (bboxIou(dtBox, gtBox, crowd) <= 0) return 0;
  const { intersection, union } = intersectionAndUnion(dt, gt);
  if (intersection === 0) return 0;
  return intersection / (crowd ? rleArea(dt) : union);
}

/**
 * IoU of every detection against every ground truth: result[d][g], like pycocotools
 * `maskUtils.iou(dts, gts, iscrowd)`. `iscrowd[g]` (default all false) marks crowd ground truths.
 */
export function rleIouMatrix(dts: Rle[], gts: Rle[], iscrowd?: readonly boolean[]): number[][] {
  if (iscrowd && iscrowd.length !== gts.length) {
    throw new Error(`iscrowd has ${iscrowd.length} entries for ${gts.length} ground truths`);
  }
  for (const r of [...dts, ...gts]) checkSameSize(r, dts[0] ?? r);
  const dtBoxes = dts.map(rleToBbox);
  const gtBoxes = gts.map(rleToBbox);
  return dts.map((dt, d) =>
    gts.map((gt, g) => iouWithBoxes(dt, dtBoxes[d]!, gt, gtBoxes[g]!, iscrowd?.[g] ?? false)),
  );
}

/**
 * Union (default) or intersection of same-size masks, computed on runs like pycocotools
 * `maskUtils.merge`. Zero-length runs in the input never appear in the output.
 */
export function rleMerge(rles: Rle[], intersect = false): Rle {
  const first = rles[0];
  if (!first) throw new Error('rleMerge needs at least one mask');
  let acc = first;
  for (const next of rles.slice(1)) {
    checkSameSize(acc, next);
    acc = mergeTwo(acc, next, intersect);
  }
  return { size: [first.size[0], first.size[1]], counts: acc.counts.slice() };
}

function mergeTwo(a: Rle, b: Rle, intersect: boolean): Rle {
  const ac = a.counts;
  const bc = b.counts;
  const counts: number[] = [];
  let ia = 1;
  let ib = 1;
  let ra = ac[0] ?? 0;
  let rb = bc[0] ?? 0;
  let onA = false;
  let onB = false;
  let on = false; // value of the output run being built
  let run = 0;
  let left = 1;
  while (left > 0) {
    const step = Math.min(ra, rb);
    run += step;
    ra -= step;
    if (ra === 0 && ia < ac.length) {
      ra = ac[ia++]!;
      onA = !onA;
    }
    rb -= step;
    if (rb === 0 && ib < bc.length) {
      rb = bc[ib++]!;
      onB = !onB;
    }
    left = ra + rb;
    const next = intersect ? onA && onB : onA || onB;
    // Close the output run when its value changes, or at the end of the mask.
    if (next !== on || left === 0) {
      counts.push(run);
      run = 0;
      on = next;
    }
  }
  return { size: a.size, counts };
}

// ---------------------------------------------------------------------------------------------
// Validation: clear errors for bad input instead of silent garbage
// ---------------------------------------------------------------------------------------------

function checkSize(h: number, w: number): void {
  if (!Number.isInteger(h) || !Number.isInteger(w) || h < 0 || w < 0) {
    throw new Error(`RLE size must be two non-negative integers [h, w], got [${h}, ${w}]`);
  }
}

function checkLength(length: number, h: number, w: number): void {
  if (length !== h * w) throw new Error(`mask has ${length} values, expected ${h}×${w} = ${h * w}`);
}

/** Throws unless counts are non-negative integers adding up to h·w. */
export function checkRle(rle: Rle): void {
  const [h, w] = rle.size;
  checkSize(h, w);
  let total = 0;
  for (const c of rle.counts) {
    if (!Number.isInteger(c) || c < 0) throw new Error(`RLE count ${c} is not a non-negative integer`);
    total += c;
  }
  if (total !== h * w) {
    throw new Error(`RLE counts add up to ${total} pixels, but size ${h}×${w} has ${h * w}`);
  }
}

function checkSameSize(a: Rle, b: Rle): void {
  if (a.size[0] !== b.size[0] || a.size[1] !== b.size[1]) {
    throw new Error(`RLE sizes differ: [${a.size.join(', ')}] vs [${b.size.join(', ')}]`);
  }
}
