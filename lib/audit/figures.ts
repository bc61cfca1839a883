// The audit's figures, from one record per human mask and one per automatic mask:
// - the IoU of each human mask with its best automatic mask: mean, median, a 20-bin histogram over
//   [0, 1], and the shares above 0.90 and 0.75 (strictly above, as the paper's "greater than");
// - recall at 0.50 / 0.75 / 0.90: the share of human masks whose one-to-one partner reaches it;
// - precision at 0.50: the share of automatic masks whose one-to-one partner reaches 0.50. Only
//   meaningful when the human masks are exhaustive (every object in the image was drawn);
//   otherwise an automatic mask of an object nobody drew counts as a false positive;
// all broken down by COCO size class (small < 32² px, medium < 96² px, large), using the human
// mask's area for IoU and recall and the automatic mask's area for precision.
import { COCO_MEDIUM_BELOW, COCO_SMALL_BELOW } from '../dataset/statistics.ts';

export interface HumanRecord {
  /** IoU with the best automatic mask (0 if none overlaps). */
  bestIou: number;
  /** IoU with the one-to-one partner (0 if none). */
  pairIou: number;
  area: number;
}

export interface AutoRecord {
  pairIou: number;
  area: number;
}

export const SIZE_CLASSES = ['small', 'medium', 'large'] as const;
export type SizeClass = (typeof SIZE_CLASSES)[number];

export function sizeClass(area: number): SizeClass {
  if (area < COCO_SMALL_BELOW) return 'small';
  return area < COCO_MEDIUM_BELOW ? 'medium' : 'large';
}

export interface HistogramBin {
  /** [from, to); the last bin also holds IoU = 1. */
  from: number;
  to: number;
  count: number;
}

export interface IouFigures {
  humanMasks: number;
  /** null when there are no human masks (no figure rather than a misleading 0). */
  meanIou: number | null;
  medianIou: number | null;
  shareAbove090: number | null;
  shareAbove075: number | null;
  histogram: HistogramBin[];
  recall: { at050: number | null; at075: number | null; at090: number | null };
}

export interface PrecisionFigures {
  automaticMasks: number;
  matchedAt050: number;
  precisionAt050: number | null;
}

export interface AuditFigures {
  overall: IouFigures;
  bySize: Record<SizeClass, IouFigures>;
  precision: PrecisionFigures & {
    /** False unless the reference is exhaustive: then the number is only a lower bound. */
    meaningful: boolean;
    bySize: Record<SizeClass, PrecisionFigures>;
  };
}

export const HISTOGRAM_BINS = 20;

export function computeFigures(
  humans: readonly HumanRecord[],
  autos: readonly AutoRecord[],
  exhaustive: boolean,
): AuditFigures {
  const bySize = (cls: SizeClass) => iouFigures(humans.filter((r) => sizeClass(r.area) === cls));
  const precisionBySize = (cls: SizeClass) =>
    precisionFigures(autos.filter((r) => sizeClass(r.area) === cls));
  return {
    overall: iouFigures(humans),
    bySize: { small: bySize('small'), medium: bySize('medium'), large: bySize('large') },
    precision: {
      ...precisionFigures(autos),
      meaningful: exhaustive,
      bySize: {
        small: precisionBySize('small'),
        medium: precisionBySize('medium'),
        large: precisionBySize('large'),
      },
    },
  };
}

export function iouFigures(records: readonly HumanRecord[]): IouFigures {
  const best = records.map((r) => r.bestIou);
  return {
    humanMasks: records.length,
    meanIou: mean(best),
    medianIou: median(best),
    shareAbove090: share(best, (v) => v > 0.9),
    shareAbove075: share(best, (v) => v > 0.75),
    histogram: histogram(best),
    recall: {
      at050: share(records, (r) => r.pairIou >= 0.5),
      at075: share(records, (r) => r.pairIou >= 0.75),
      at090: share(records, (r) => r.pairIou >= 0.9),
    },
  };
}

function precisionFigures(records: readonly AutoRecord[]): PrecisionFigures {
  const matchedAt050 = records.filter((r) => r.pairIou >= 0.5).length;
  return {
    automaticMasks: records.length,
    matchedAt050,
    precisionAt050: records.length === 0 ? null : matchedAt050 / records.length,
  };
}

/** 20 equal bins over [0, 1]. */
export function histogram(values: readonly number[]): HistogramBin[] {
  const bins = Array.from({ length: HISTOGRAM_BINS }, (_, i) => ({
    from: i / HISTOGRAM_BINS,
    to: (i + 1) / HISTOGRAM_BINS,
    count: 0,
  }));
  for (const v of values) bins[histogramBin(v)]!.count += 1;
  return bins;
}

/** Which bin an IoU falls in; compares with the bin edges so 0.9 lands in [0.90, 0.95). */
export function histogramBin(iou: number): number {
  let bin = Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor(iou * HISTOGRAM_BINS)));
  // iou·20 can land a hair off an edge in floating point; settle it against the edge itself.
  if (bin > 0 && iou < bin / HISTOGRAM_BINS) bin -= 1;
  else if (bin < HISTOGRAM_BINS - 1 && iou >= (bin + 1) / HISTOGRAM_BINS) bin += 1;
  return bin;
}

export function mean(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  return values.reduce((s, v) => s + v, 0) / values.length;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The q-quantile (0 ≤ q ≤ 1) by linear interpolation between ranks, as numpy's default. */
export function quantile(values: readonly number[], q: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

function share<T>(items: readonly T[], test: (item: T) => boolean): number | null {
  if (items.length === 0) return null;
  return items.filter(test).length / items.length;
}

// ---------------------------------------------------------------------------------------------
// Masks per image, for the sampled images (the whole run's numbers are in dataset/stats.json).
// ---------------------------------------------------------------------------------------------

export interface CountSummary {
  mean: number | null;
  median: number | null;
  min: number | null;
  max: number | null;
  /** The paper's bins (Fig. 5): 0, 1-10, 11-50, 51-100, 101-200, >200. */
  histogram: Array<{ label: string; count: number }>;
}

const COUNT_BINS: ReadonlyArray<readonly [string, number, number]> = [
  ['0', 0, 0],
  ['1-10', 1, 10],
  ['11-50', 11, 50],
  ['51-100', 51, 100],
  ['101-200', 101, 200],
  ['>200', 201, Infinity],
];

export function countSummary(counts: readonly number[]): CountSummary {
  return {
    mean: mean(counts),
    median: median(counts),
    // reduce, not Math.min(...counts): spreading a very long list overflows the call stack.
    min: counts.length === 0 ? null : counts.reduce((a, b) => Math.min(a, b)),
    max: counts.length === 0 ? null : counts.reduce((a, b) => Math.max(a, b)),
    histogram: COUNT_BINS.map(([label, lo, hi]) => ({
      label,
      count: counts.filter((c) => c >= lo && c <= hi).length,
    })),
  };
}
