// Calibrating the AMG's two mask filters (predIouThresh, stabilityScoreThresh) for one model on
// images with ground truth. The official thresholds (0.88, 0.95; sam-spec §3) are ViT-H's: a
// weaker model's predicted IoUs and stability scores live on another scale, and at the official
// values it may keep no mask at all.
//
// The measurement: run the AMG with both filters off and the in-crop NMS off, so every candidate
// of every point survives in the AMG's own order; compute each candidate's IoU with every
// ground-truth mask once (the audit's matchImage, pycocotools' IoU). Then for each pair of
// thresholds, `keptAt` redoes what the AMG does after its filters — keep the candidates that
// pass both, then the in-crop NMS — and the kept masks are matched one-to-one with the ground
// truth as the audit does (greedy, highest IoU first). This equals running the AMG at those
// thresholds (single crop, no postprocessing; test/unit/amg-calibration.test.ts checks it).
//
// The rule (`CALIBRATION_RULE`): the pair with the highest F1, where a kept mask is a true
// positive when its one-to-one partner has IoU ≥ 0.5, precision = true positives / kept masks and
// recall = true positives / ground-truth masks, both summed over all images. Ties go to the
// stricter pair (higher predicted-IoU threshold, then higher stability threshold).
import { matchImage, greedyPairs } from '../audit/match.ts';
import { passesIouThresh, passesStabilityThresh } from './mask-filters.ts';
import { batchedNms } from './nms.ts';
import type { Box, MaskCandidate } from './types.ts';
import type { Rle } from '../rle.ts';

export const CALIBRATION_MATCH_IOU = 0.5;

export const CALIBRATION_RULE =
  'highest F1 over a grid of (predIouThresh, stabilityScoreThresh), the AMG run with both filters ' +
  'and its NMS (0.7) applied as usual; a kept mask counts as correct when its one-to-one partner ' +
  'among the ground-truth masks (greedy, highest IoU first, as the audit pairs them) has IoU >= 0.5; ' +
  'precision and recall summed over all images; ties go to the stricter pair';

/** One image's unfiltered candidates, reduced to what the filters, the NMS and the matching need. */
export interface CalibrationImage {
  /** Candidates in the AMG's order (the order its in-crop NMS receives them in). */
  predictedIou: number[];
  stabilityScore: number[];
  box: Box[];
  /** iou[c][g]: candidate c against ground-truth mask g. */
  iou: number[][];
  groundTruth: number;
}

/** Reduces the AMG's unfiltered candidates of one image and its ground-truth masks. */
export function calibrationImage(
  candidates: readonly MaskCandidate[],
  groundTruth: readonly Rle[],
  ignore: Rle | null = null,
): CalibrationImage {
  const { iou } = matchImage(
    groundTruth,
    candidates.map((c) => c.rle),
    ignore,
  );
  return {
    predictedIou: candidates.map((c) => c.predictedIou),
    stabilityScore: candidates.map((c) => c.stabilityScore),
    box: candidates.map((c) => [...c.box]),
    iou,
    groundTruth: groundTruth.length,
  };
}

export interface Thresholds {
  predIouThresh: number;
  stabilityScoreThresh: number;
}

/** Indices of the candidates the AMG keeps at these thresholds, in its output order. */
export function keptAt(image: CalibrationImage, t: Thresholds, boxNmsThresh = 0.7): number[] {
  const passing: number[] = [];
  for (let c = 0; c < image.predictedIou.length; c++) {
    if (
      passesIouThresh(image.predictedIou[c]!, t.predIouThresh) &&
      passesStabilityThresh(image.stabilityScore[c]!, t.stabilityScoreThresh)
    )
      passing.push(c);
  }
  const keep = batchedNms(
    passing.map((c) => image.box[c]!),
    passing.map((c) => image.predictedIou[c]!),
    boxNmsThresh,
  );
  return keep.map((k) => passing[k]!);
}

export interface CalibrationFigures extends Thresholds {
  images: number;
  masks: number;
  groundTruth: number;
  /** Kept masks whose one-to-one partner has IoU ≥ 0.5. */
  matched: number;
  precision: number;
  recall: number;
  f1: number;
  masksPerImage: number;
  /** The audit's headline: mean over ground-truth masks of the best IoU with any kept mask. */
  meanBestIou: number;
}

export function evaluateThresholds(
  images: readonly CalibrationImage[],
  t: Thresholds,
  boxNmsThresh = 0.7,
): CalibrationFigures {
  let masks = 0;
  let matched = 0;
  let groundTruth = 0;
  let bestIouSum = 0;
  for (const image of images) {
    const kept = keptAt(image, t, boxNmsThresh);
    const rows = kept.map((c) => image.iou[c]!);
    masks += kept.length;
    groundTruth += image.groundTruth;
    matched += greedyPairs(rows, image.groundTruth).filter((p) => p.iou >= CALIBRATION_MATCH_IOU).length;
    for (let g = 0; g < image.groundTruth; g++) {
      let best = 0;
      for (const row of rows) best = Math.max(best, row[g]!);
      bestIouSum += best;
    }
  }
  const precision = masks > 0 ? matched / masks : 0;
  const recall = groundTruth > 0 ? matched / groundTruth : 0;
  return {
    ...t,
    images: images.length,
    masks,
    groundTruth,
    matched,
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
    masksPerImage: images.length > 0 ? masks / images.length : 0,
    meanBestIou: groundTruth > 0 ? bestIouSum / groundTruth : 0,
  };
}

/** The grid searched: predicted IoU 0 to 0.98 by 0.02, stability 0 to 0.95 by 0.05 (0 = filter off). */
export function thresholdGrid(): Thresholds[] {
  const grid: Thresholds[] = [];
  for (let i = 0; i <= 49; i++) {
    for (let s = 0; s <= 19; s++) {
      grid.push({ predIouThresh: round2(i * 0.02), stabilityScoreThresh: round2(s * 0.05) });
    }
  }
  return grid;
}

export interface CalibrationResult {
  best: CalibrationFigures;
  /** Every pair of the grid, in grid order. */
  table: CalibrationFigures[];
}

/** The pair the rule picks (see the top of this file). */
export function calibrate(
  images: readonly CalibrationImage[],
  grid: readonly Thresholds[] = thresholdGrid(),
  boxNmsThresh = 0.7,
): CalibrationResult {
  if (images.length === 0) throw new Error('no images to calibrate on');
  const table = grid.map((t) => evaluateThresholds(images, t, boxNmsThresh));
  let best = table[0]!;
  for (const row of table.slice(1)) {
    const stricter =
      row.predIouThresh > best.predIouThresh ||
      (row.predIouThresh === best.predIouThresh && row.stabilityScoreThresh > best.stabilityScoreThresh);
    if (row.f1 > best.f1 || (row.f1 === best.f1 && stricter)) best = row;
  }
  return { best, table };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** What model.json's `amg_calibration` holds (lib/sam/model-package.ts reads it back). */
export interface AmgCalibrationRecord {
  pred_iou_thresh: number;
  stability_score_thresh: number;
  points_per_side: number;
  box_nms_thresh: number;
  /** The images, e.g. "sa-engine synth --images 20 --seed 7777" (never the training set). */
  measured_on: string;
  rule: string;
  /** How to measure it again. */
  command: string;
  figures: Record<string, number>;
  official_figures: Record<string, number>;
  /**
   * Set when no pair of the grid kept a single correct mask on these images, so they gave no basis
   * to choose: the thresholds are those of the version named here, `figures` theirs on these images.
   */
  inherited_from?: string;
}

/** The record of a calibration: the chosen pair with its figures, and the official pair's. */
export function calibrationRecord(
  best: CalibrationFigures,
  official: CalibrationFigures,
  settings: { pointsPerSide: number; measuredOn: string; command: string; inheritedFrom?: string },
): AmgCalibrationRecord {
  return {
    pred_iou_thresh: best.predIouThresh,
    stability_score_thresh: best.stabilityScoreThresh,
    points_per_side: settings.pointsPerSide,
    box_nms_thresh: 0.7,
    measured_on: settings.measuredOn,
    rule: CALIBRATION_RULE,
    command: settings.command,
    figures: figuresJson(best),
    official_figures: figuresJson(official),
    ...(settings.inheritedFrom !== undefined ? { inherited_from: settings.inheritedFrom } : {}),
  };
}

/** SAM's own thresholds (sam-spec §3), measured beside every calibration for comparison. */
export const OFFICIAL_THRESHOLDS: Thresholds = { predIouThresh: 0.88, stabilityScoreThresh: 0.95 };

function figuresJson(f: CalibrationFigures): Record<string, number> {
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    images: f.images,
    ground_truth_masks: f.groundTruth,
    masks: f.masks,
    masks_per_image: r3(f.masksPerImage),
    matched_at_iou_0_5: f.matched,
    precision: r3(f.precision),
    recall: r3(f.recall),
    f1: r3(f.f1),
    mean_best_iou_per_ground_truth_mask: r3(f.meanBestIou),
  };
}
