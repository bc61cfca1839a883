// The AMG's per-mask filters and the chain that applies them to a batch of decoder outputs
// (sam-spec §3 step 4; automatic_mask_generator.py `_process_batch`).
//
// Thresholds compare like torch does: a float32 tensor against a Python float converts the
// float to float32 first, so `score >= 0.95` means score ≥ float32(0.95) ≈ 0.94999999. All
// scores here are float32 values (the decoder's outputs, or float32 quotients).
import { rleArea, rleToBbox, type Rle } from '../rle.ts';
import { uncropBox, uncropMaskToRle } from './crop-boxes.ts';
import { LOW_RES_SIZE, upsampleAndBinarize, type MaskUpsamplePlan } from './mask-upsample.ts';
import {
  DEFAULT_AMG_OPTIONS,
  type AmgOptions,
  type Box,
  type DecoderBatch,
  type HW,
  type MaskCandidate,
  type MaskGrid,
} from './types.ts';

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// Scores
// ---------------------------------------------------------------------------------------------

/** Keep a mask whose predicted IoU is > thresh (strict); a threshold ≤ 0 keeps everything. */
export function passesIouThresh(predictedIou: number, thresh: number): boolean {
  return thresh <= 0 || f32(predictedIou) > f32(thresh);
}

/**
 * calculate_stability_score from its two counts: the IoU of the masks thresholded at
 * +offset and −offset, #{L > +offset} / #{L > −offset} (one is inside the other), as float32.
 * 0/0 (no logit above −offset) gives NaN, which no threshold keeps.
 */
export function stabilityFromCounts(intersections: number, unions: number): number {
  return f32(intersections / unions);
}

/** calculate_stability_score on logits (any layout), with SAM's mask threshold 0. */
export function stabilityScore(logits: ArrayLike<number>, offset = 1.0): number {
  const high = f32(0 + offset);
  const low = f32(0 - offset);
  let intersections = 0;
  let unions = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > high) intersections++;
    if (v > low) unions++;
  }
  return stabilityFromCounts(intersections, unions);
}

/** Keep a mask whose stability score is ≥ thresh (NaN fails); a threshold ≤ 0 keeps everything. */
export function passesStabilityThresh(stability: number, thresh: number): boolean {
  return thresh <= 0 || f32(stability) >= f32(thresh);
}

// ---------------------------------------------------------------------------------------------
// Boxes
// ---------------------------------------------------------------------------------------------

/**
 * batched_mask_to_box for one mask: the XYXY box of the pixels whose value is > threshold, with
 * *inclusive* x1/y1 (the last column/row holding a pixel). An empty mask gives [0, 0, 0, 0].
 * `within` (inclusive XYXY) limits the search to a window known to hold every such pixel.
 */
export function maskBox(mask: MaskGrid<ArrayLike<number>>, threshold = 0, within?: Box): Box {
  const { data, h, w } = mask;
  const [wx0, wy0, wx1, wy1] = within ?? [0, 0, w - 1, h - 1];
  // View the mask as lines (rows for row-major) of values along the line.
  const rowMajor = mask.order === 'row-major';
  const lineLength = rowMajor ? w : h;
  const [lineFrom, lineTo, alongFrom, alongTo] = rowMajor ? [wy0, wy1, wx0, wx1] : [wx0, wx1, wy0, wy1];
  let lineMin = -1;
  let lineMax = -1;
  let alongMin = Infinity;
  let alongMax = -1;
  for (let line = lineFrom; line <= lineTo; line++) {
    const base = line * lineLength;
    // Only the ends of each line matter: scan in from both sides.
    let first = alongFrom;
    while (first <= alongTo && !(data[base + first]! > threshold)) first++;
    if (first > alongTo) continue;
    let last = alongTo;
    while (!(data[base + last]! > threshold)) last--;
    if (lineMin < 0) lineMin = line;
    lineMax = line;
    alongMin = Math.min(alongMin, first);
    alongMax = Math.max(alongMax, last);
  }
  if (lineMax < 0) return [0, 0, 0, 0];
  return rowMajor ? [alongMin, lineMin, alongMax, lineMax] : [lineMin, alongMin, lineMax, alongMax];
}

/** maskBox of a mask given as an RLE (inclusive XYXY; empty → [0, 0, 0, 0]). */
export function rleBox(rle: Rle): Box {
  const [x, y, w, h] = rleToBbox(rle); // pycocotools' convention: w, h = pixel extent
  return w === 0 ? [0, 0, 0, 0] : [x, y, x + w - 1, y + h - 1];
}

/**
 * is_box_near_crop_edge: does the (crop-frame) box come within `atol` px of an edge of its crop
 * that is not also an edge of the image? Such masks are probably cut off by the crop. Compared
 * coordinate by coordinate: box x0 with crop x0, ..., box y1 with crop y1. Never true for a crop
 * that is the whole image.
 */
export function isBoxNearCropEdge(box: Box, cropBox: Box, origBox: Box, atol = 20.0): boolean {
  const b = uncropBox(box, cropBox);
  for (let k = 0; k < 4; k++) {
    const nearCrop = Math.abs(b[k]! - cropBox[k]!) <= atol;
    const nearImage = Math.abs(b[k]! - origBox[k]!) <= atol;
    if (nearCrop && !nearImage) return true;
  }
  return false;
}

/** The paper's filter (not in the released code): does the mask cover ≥ maxCoverage of the image? */
export function exceedsCoverage(rle: Rle, maxCoverage: number): boolean {
  const [h, w] = rle.size;
  return maxCoverage < 1 && rleArea(rle) >= maxCoverage * h * w;
}

// ---------------------------------------------------------------------------------------------
// The per-batch chain
// ---------------------------------------------------------------------------------------------

/** Where a batch's masks come from. */
export interface CropContext {
  /** The crop, exclusive XYXY in the image frame. */
  cropBox: Box;
  /** [H, W] of the whole image. */
  imageSize: HW;
  /** planMaskUpsample(cropH, cropW), shared by every batch of the crop. */
  plan: MaskUpsamplePlan;
}

/**
 * `_process_batch` on decoder outputs: for point i (crop frame, points[2i], points[2i+1]) and
 * each of its masks, in that order:
 *   1. predicted IoU > predIouThresh;
 *   2. upsample to the crop (Sam.postprocess_masks) and keep stability ≥ stabilityScoreThresh;
 *   3. binarise (logit > 0), box it, and drop it if the box is near an inner crop edge;
 *   4. encode as RLE in the full-image frame.
 * The official code upsamples every mask before step 1. The predicted IoU does not depend on the
 * mask, so upsampling only the masks that pass it gives the same result for less work.
 *
 * `maskIndices` picks which of each point's masks to use: all by default; for the ONNX decoder,
 * whose 4 outputs start with the single-mask token, pass [1, 2, 3] to match SAM's multimask output.
 */
export function maskCandidatesFromBatch(
  batch: DecoderBatch,
  points: Float64Array,
  crop: CropContext,
  options: Partial<AmgOptions> = {},
  maskIndices?: readonly number[],
): MaskCandidate[] {
  const opts = { ...DEFAULT_AMG_OPTIONS, ...options };
  const { cropBox, imageSize, plan } = crop;
  const [imH, imW] = imageSize;
  const perPoint = batch.count > 0 ? batch.iou.length / batch.count : 0;
  checkBatch(batch, points, perPoint);
  const indices = maskIndices ?? Array.from({ length: perPoint }, (_, k) => k);
  checkMaskIndices(indices, perPoint);
  const origBox: Box = [0, 0, imW, imH];
  const scratch = maskScratch(plan);
  const kept: MaskCandidate[] = [];
  for (let i = 0; i < batch.count; i++) {
    for (const k of indices) {
      const m = i * perPoint + k;
      const predictedIou = batch.iou[m]!;
      if (!passesIouThresh(predictedIou, opts.predIouThresh)) continue;

      const lowRes = batch.lowRes.subarray(m * LOW_RES_SIZE ** 2, (m + 1) * LOW_RES_SIZE ** 2);
      const up = upsampleAndBinarize(lowRes, plan, opts.stabilityScoreOffset, scratch);
      const stabilityScore = stabilityFromCounts(up.intersections, up.unions);
      if (!passesStabilityThresh(stabilityScore, opts.stabilityScoreThresh)) continue;

      const box = up.window ? maskBox(up.mask, 0, up.window) : ([0, 0, 0, 0] as Box);
      if (isBoxNearCropEdge(box, cropBox, origBox)) continue;

      kept.push({
        rle: uncropMaskToRle(up.mask, cropBox, imH, imW, 0, box),
        box: uncropBox(box, cropBox),
        predictedIou,
        stabilityScore,
        point: [points[2 * i]! + cropBox[0], points[2 * i + 1]! + cropBox[1]],
        cropBox: [...cropBox],
      });
    }
  }
  return kept;
}

/** One binary-mask buffer per plan, reused by every batch of the crop (a mask is consumed before the next). */
const scratchByPlan = new WeakMap<MaskUpsamplePlan, Uint8Array>();
function maskScratch(plan: MaskUpsamplePlan): Uint8Array {
  let buffer = scratchByPlan.get(plan);
  if (!buffer) scratchByPlan.set(plan, (buffer = new Uint8Array(plan.h * plan.w)));
  return buffer;
}

function checkBatch(batch: DecoderBatch, points: Float64Array, perPoint: number): void {
  if (!Number.isInteger(perPoint)) {
    throw new RangeError(`${batch.iou.length} IoU predictions do not divide among ${batch.count} points`);
  }
  if (batch.lowRes.length !== batch.iou.length * LOW_RES_SIZE ** 2) {
    throw new RangeError(`lowRes has ${batch.lowRes.length} values for ${batch.iou.length} masks of 256×256`);
  }
  if (points.length !== 2 * batch.count) {
    throw new RangeError(`${points.length / 2} points for a batch of ${batch.count}`);
  }
}

function checkMaskIndices(indices: readonly number[], perPoint: number): void {
  for (const k of indices) {
    if (!Number.isInteger(k) || k < 0 || k >= perPoint) {
      throw new RangeError(`mask index ${k} is not among the ${perPoint} masks per point`);
    }
  }
}
