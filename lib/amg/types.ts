// Shared shapes of the automatic mask generator (AMG). The names follow the official
// segment_anything/automatic_mask_generator.py (sam-spec §3) so the two can be read side by side.
import type { Rle } from '../rle.ts';

/**
 * A box [x0, y0, x1, y1] in pixels.
 * - Mask boxes (from `maskBox`) are *inclusive*: x1 is the last column holding a mask pixel.
 * - Crop boxes (from `generateCropBoxes`) are *exclusive*: x1 is one past the last column.
 * Both are what the official code calls XYXY; only their meaning of x1/y1 differs.
 */
export type Box = [number, number, number, number];

/** [height, width], the order SAM uses for sizes. */
export type HW = [number, number];

/** How a 2-D mask is laid out in its flat array. */
export type MaskOrder =
  /** index y·w + x: torch's layout, and what images use. */
  | 'row-major'
  /** index x·h + y: the order COCO RLE reads pixels, so encoding is one sequential pass. */
  | 'column-major';

/** A flat array of per-pixel values (logits, or 0/1) with its shape and layout. */
export interface MaskGrid<T extends ArrayLike<number> = Float32Array> {
  data: T;
  h: number;
  w: number;
  order: MaskOrder;
}

/**
 * Decoder outputs for a batch of single-point prompts, as lib/sam/session.ts returns them
 * (`PointBatchOutput`): for point i and mask k, `iou[i·C + k]` and the 256×256 logits at
 * `lowRes[(i·C + k)·65536 ...]`, C masks per point (3 for SAM's multimask output).
 */
export interface DecoderBatch {
  count: number;
  iou: Float32Array;
  lowRes: Float32Array;
}

/**
 * One mask that survived a crop's filters: a row of the official `MaskData`, already moved into
 * the full-image frame (the official code does that right after the in-crop NMS; NMS on integer
 * boxes does not change under a shift, so doing it earlier changes nothing).
 */
export interface MaskCandidate {
  /** Uncompressed RLE in the full-image frame. */
  rle: Rle;
  /** Inclusive XYXY box of the mask, full-image frame. */
  box: Box;
  /** The decoder's predicted IoU (a float32 value). */
  predictedIou: number;
  /** #{logit > +offset} / #{logit > −offset} on the crop-resolution logits (a float32 value). */
  stabilityScore: number;
  /** The prompt point [x, y], full-image frame (float64, as the official code computes it). */
  point: [number, number];
  /** The crop the mask was predicted in: exclusive XYXY, full-image frame. */
  cropBox: Box;
}

/** The AMG's filter settings, with the official defaults in `DEFAULT_AMG_OPTIONS`. */
export interface AmgOptions {
  /** Keep masks whose predicted IoU is > this (strict); 0 turns the filter off. */
  predIouThresh: number;
  /** Keep masks whose stability score is ≥ this; 0 turns the filter off. */
  stabilityScoreThresh: number;
  /** The ± shift of the binarisation threshold for the stability score. */
  stabilityScoreOffset: number;
  /** NMS threshold inside one crop (suppress when box IoU > this). */
  boxNmsThresh: number;
  /** NMS threshold between crops. */
  cropNmsThresh: number;
  /** Remove islands and fill holes smaller than this many pixels; 0 turns postprocessing off. */
  minMaskRegionArea: number;
  /**
   * The paper's rule (SA-1B): drop a mask whose every island is below minMaskRegionArea, where
   * the released code keeps its largest island. Off by default (the released behaviour).
   */
  dropSmallMasks: boolean;
  /**
   * The paper's coverage filter (SA-1B used 0.95): drop masks covering ≥ this fraction of the
   * image. The released code has no such filter; 1 or more turns it off (the default).
   */
  maxMaskCoverage: number;
}

/** segment-anything's SamAutomaticMaskGenerator defaults, plus the paper-only options off. */
export const DEFAULT_AMG_OPTIONS: Readonly<AmgOptions> = Object.freeze({
  predIouThresh: 0.88,
  stabilityScoreThresh: 0.95,
  stabilityScoreOffset: 1.0,
  boxNmsThresh: 0.7,
  cropNmsThresh: 0.7,
  minMaskRegionArea: 0,
  dropSmallMasks: false,
  maxMaskCoverage: 1,
});
