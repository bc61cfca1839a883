// The shapes of what the audit writes (runs/<run>/audit/report.json and rows.jsonl), kept apart
// from the code that computes them so a reader of the files can find every field explained here.
import type { MaskSourceConfig } from '../run-config.ts';
import type { AuditFigures, CountSummary } from './figures.ts';
import type { GateResult, GateThresholds } from './gate.ts';

/** One line of rows.jsonl: one audited image, so an owner can open the worst cases. */
export interface AuditRow {
  imageId: number;
  /** URI of the photo. */
  image: string;
  /** Where its human masks came from: the label image, or the COCO JSON. */
  reference: string;
  width: number;
  height: number;
  humanMasks: number;
  automaticMasks: number;
  /** Mean over the human masks of the best IoU; null when the image has no human mask. */
  meanBestIou: number | null;
  /** The lowest best IoU, with the human mask it belongs to and that mask's best automatic mask. */
  worstIou: number | null;
  worstHumanMask: string | null;
  worstHumanIndex: number | null;
  /** Index in the SA-1B file's annotations; null when no automatic mask overlaps. */
  worstAutoIndex: number | null;
  /** One-to-one pairs with IoU ≥ 0.50. */
  matchedAt050: number;
  /** Pixels left out of IoU (the reference's ignore value). */
  ignoredPixels: number;
}

export interface GalleryEntry {
  rank: number;
  /** Key of the JPEG, relative to the run's output store. */
  key: string;
  imageId: number;
  image: string;
  humanMask: string | null;
  autoIndex: number | null;
  iou: number | null;
  meanBestIou: number | null;
}

export interface Heatmap {
  /** Where it came from (runs/<run>/dataset/stats.json). */
  source: string;
  /** counts[row][column] of mask centres over the whole run; row 0 is the top of the image. */
  counts: number[][];
}

export interface RunMasksPerImage {
  source: string;
  mean: number | null;
  median: number | null;
  histogram: Array<{ label: string; count: number }>;
}

export interface AuditReport {
  run: string;
  reference: {
    uri: string;
    format: MaskSourceConfig['format'];
    ignoreValue: number | null;
    /** Whether every object of every reference image was drawn; precision means something only then. */
    exhaustive: boolean;
    /** Images the reference has masks for. */
    images: number;
    /** Of those, images no segmented image of the run matches (by file name). */
    unmatchedImages: number;
  };
  runImages: {
    segmented: number;
    failed: number;
    /** Shards whose results were not written yet: their images were not considered. */
    unfinishedShards: number;
    /** Segmented images the reference has no masks for. */
    withoutReference: number;
  };
  sample: {
    requested: number;
    seed: number;
    /** Segmented images with human masks: what the sample was drawn from. */
    candidates: number;
    audited: number;
  };
  masks: {
    human: number;
    automatic: number;
    /** Reference annotations left out: crowd regions and masks without a pixel. */
    skippedCrowd: number;
    skippedEmpty: number;
  };
  figures: AuditFigures;
  /** What the SAM paper reports for its own audit (§5, 500 images, ~50k masks). */
  paper: { shareAbove090: number; shareAbove075: number };
  masksPerImage: { human: CountSummary; automatic: CountSummary; run: RunMasksPerImage | null };
  gate: GateResult & { thresholds: GateThresholds; configured: boolean };
  /** The worst images first (lowest mean best IoU); at most 20. */
  worst: AuditRow[];
  gallery: GalleryEntry[];
  heatmap: Heatmap | null;
  /** Things the reader should know (e.g. stats.json could not be read). */
  notes: string[];
  keys: { json: string; html: string; rows: string };
}

export const PAPER_FIGURES = { shareAbove090: 0.94, shareAbove075: 0.97 } as const;
