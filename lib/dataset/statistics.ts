// The dataset statistics of the SAM paper §5 (and its Fig. 5), accumulated one image at a time so
// that a run of millions of images needs only a few fixed-size tables in memory:
// - masks per image: mean, median, min, max and a histogram with the paper's bins;
// - relative mask size, sqrt(mask area / image area), over 1-2-5 (log-ish) bins, plus the COCO size
//   classes in absolute pixels (small < 32², medium < 96², large);
// - where mask centres fall in the image: a 32×32 grid of counts, image-normalised.
// Each dataset shard keeps its own accumulator and stores its state; the final statistics are the
// states merged in shard order (every table is a sum, so merging loses nothing).
import { z } from 'zod';
import { centroidCell, type MaskMoments } from './mask-moments.ts';

/** One histogram bin: values in [min, max], both inclusive; `max` null means "and above". */
export interface CountBin {
  label: string;
  min: number;
  max: number | null;
  count: number;
}

/** One relative-size bin: values in [min, max), the last one also including max = 1. */
export interface SizeBin {
  label: string;
  min: number;
  max: number;
  count: number;
}

export interface DatasetStats {
  run: string;
  /** Images with masks (stage 3 succeeded), and images stage 3 could not segment. */
  images: number;
  imagesFailed: number;
  masks: number;
  /** Masks with no pixel at all: counted in `masks`, left out of the centre heatmap. */
  emptyMasks: number;
  masksPerImage: {
    /** null when there are no images. */
    mean: number | null;
    median: number | null;
    min: number | null;
    max: number | null;
    histogram: CountBin[];
  };
  maskSize: {
    /** What the relative size means, spelled out for someone reading the file alone. */
    relativeSize: string;
    meanRelativeSize: number | null;
    histogram: SizeBin[];
    /** COCO size classes of the mask area in pixels of the original image. */
    coco: { small: number; medium: number; large: number; smallBelow: number; mediumBelow: number };
  };
  centres: {
    grid: number;
    /** counts[row][column]; row 0 is the top of the image, column 0 its left edge. */
    counts: number[][];
  };
  models: string[];
  /** Sum of stage 3's per-image processing times, failures included. */
  processingMs: number;
  release: ReleaseStats | null;
}

export interface ReleaseStats {
  shortestSide: number;
  images: number;
  /** Release copies are smaller; the masks are not rescaled. */
  maskResolution: 'original';
  note: string;
}

/** Masks per image, as binned in the paper (Fig. 5, left), plus a bin for images with none. */
const MASKS_PER_IMAGE_BINS: ReadonlyArray<readonly [number, number | null]> = [
  [0, 0],
  [1, 10],
  [11, 50],
  [51, 100],
  [101, 200],
  [201, null],
];

/** Edges of the relative-size bins, in hundredths: [0, 0.01), [0.01, 0.02), ..., [0.5, 1]. */
const RELATIVE_SIZE_EDGES_PERCENT = [0, 1, 2, 5, 10, 20, 50, 100];

export const COCO_SMALL_BELOW = 32 * 32;
export const COCO_MEDIUM_BELOW = 96 * 96;
export const CENTRE_GRID = 32;

/** What an accumulator has counted, as JSON: one dataset shard's contribution to the statistics. */
export const datasetStatsStateSchema = z.object({
  images: z.number().int().nonnegative(),
  imagesFailed: z.number().int().nonnegative(),
  masks: z.number().int().nonnegative(),
  emptyMasks: z.number().int().nonnegative(),
  /** [mask count, images with that many masks], sorted by mask count. */
  imagesByMaskCount: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().positive()])),
  relativeSizeSum: z.number().nonnegative(),
  sizeBins: z.array(z.number().int().nonnegative()).length(RELATIVE_SIZE_EDGES_PERCENT.length - 1),
  coco: z.object({
    small: z.number().int().nonnegative(),
    medium: z.number().int().nonnegative(),
    large: z.number().int().nonnegative(),
  }),
  centres: z.array(z.number().int().nonnegative()).length(CENTRE_GRID * CENTRE_GRID),
  models: z.array(z.string()),
  processingMs: z.number().nonnegative(),
});
export type DatasetStatsState = z.infer<typeof datasetStatsStateSchema>;

export class DatasetStatsAccumulator {
  private images = 0;
  private imagesFailed = 0;
  private masks = 0;
  private emptyMasks = 0;
  /** How many images have each mask count: enough for an exact median without keeping every count. */
  private readonly imagesByMaskCount = new Map<number, number>();
  private relativeSizeSum = 0;
  private readonly sizeBins = new Array<number>(RELATIVE_SIZE_EDGES_PERCENT.length - 1).fill(0);
  private readonly coco = { small: 0, medium: 0, large: 0 };
  private readonly centres = new Array<number>(CENTRE_GRID * CENTRE_GRID).fill(0);
  private readonly models = new Set<string>();
  private processingMs = 0;

  /** An image stage 3 segmented, with the moments of each of its masks. */
  addImage(width: number, height: number, masks: readonly MaskMoments[]): void {
    this.images += 1;
    this.masks += masks.length;
    this.imagesByMaskCount.set(masks.length, (this.imagesByMaskCount.get(masks.length) ?? 0) + 1);
    for (const mask of masks) this.addMask(width, height, mask);
  }

  addFailedImage(): void {
    this.imagesFailed += 1;
  }

  /** Every result line, done or failed, says which model worked on it and for how long. */
  addProcessing(model: string, ms: number): void {
    this.models.add(model);
    this.processingMs += ms;
  }

  /** Everything counted so far, small and fixed-size (the mask-count table has one entry per distinct count). */
  state(): DatasetStatsState {
    return {
      images: this.images,
      imagesFailed: this.imagesFailed,
      masks: this.masks,
      emptyMasks: this.emptyMasks,
      imagesByMaskCount: [...this.imagesByMaskCount].sort((a, b) => a[0] - b[0]),
      relativeSizeSum: this.relativeSizeSum,
      sizeBins: [...this.sizeBins],
      coco: { ...this.coco },
      centres: [...this.centres],
      models: [...this.models].sort(),
      processingMs: this.processingMs,
    };
  }

  /** Adds what another accumulator counted (e.g. one shard's stored state). */
  merge(other: DatasetStatsState): void {
    this.images += other.images;
    this.imagesFailed += other.imagesFailed;
    this.masks += other.masks;
    this.emptyMasks += other.emptyMasks;
    for (const [count, images] of other.imagesByMaskCount)
      this.imagesByMaskCount.set(count, (this.imagesByMaskCount.get(count) ?? 0) + images);
    this.relativeSizeSum += other.relativeSizeSum;
    other.sizeBins.forEach((n, i) => (this.sizeBins[i]! += n));
    this.coco.small += other.coco.small;
    this.coco.medium += other.coco.medium;
    this.coco.large += other.coco.large;
    other.centres.forEach((n, i) => (this.centres[i]! += n));
    for (const model of other.models) this.models.add(model);
    this.processingMs += other.processingMs;
  }

  private addMask(width: number, height: number, mask: MaskMoments): void {
    const imageArea = width * height;
    this.relativeSizeSum += Math.sqrt(mask.area / imageArea);
    this.sizeBins[relativeSizeBin(mask.area, imageArea)]! += 1;
    this.coco[cocoSizeClass(mask.area)] += 1;
    const cell = centroidCell(mask, width, height, CENTRE_GRID);
    if (cell) this.centres[cell.row * CENTRE_GRID + cell.column]! += 1;
    else this.emptyMasks += 1;
  }

  result(run: string, release: ReleaseStats | null): DatasetStats {
    return {
      run,
      images: this.images,
      imagesFailed: this.imagesFailed,
      masks: this.masks,
      emptyMasks: this.emptyMasks,
      masksPerImage: this.masksPerImage(),
      maskSize: {
        relativeSize: 'sqrt(mask area / image area)',
        meanRelativeSize: this.masks === 0 ? null : this.relativeSizeSum / this.masks,
        histogram: this.sizeHistogram(),
        coco: { ...this.coco, smallBelow: COCO_SMALL_BELOW, mediumBelow: COCO_MEDIUM_BELOW },
      },
      centres: { grid: CENTRE_GRID, counts: rows(this.centres, CENTRE_GRID) },
      models: [...this.models].sort(),
      processingMs: this.processingMs,
      release,
    };
  }

  private masksPerImage(): DatasetStats['masksPerImage'] {
    const histogram = MASKS_PER_IMAGE_BINS.map(([min, max]) => ({
      label: max === null ? `>${min - 1}` : min === max ? `${min}` : `${min}-${max}`,
      min,
      max,
      count: 0,
    }));
    for (const [masks, images] of this.imagesByMaskCount) {
      histogram.find((bin) => masks >= bin.min && (bin.max === null || masks <= bin.max))!.count += images;
    }
    if (this.images === 0) return { mean: null, median: null, min: null, max: null, histogram };
    const counts = [...this.imagesByMaskCount.keys()].sort((a, b) => a - b);
    return {
      mean: this.masks / this.images,
      median: medianOfFrequencies(counts, this.imagesByMaskCount),
      min: counts[0]!,
      max: counts[counts.length - 1]!,
      histogram,
    };
  }

  private sizeHistogram(): SizeBin[] {
    return this.sizeBins.map((count, i) => {
      const min = RELATIVE_SIZE_EDGES_PERCENT[i]! / 100;
      const max = RELATIVE_SIZE_EDGES_PERCENT[i + 1]! / 100;
      return { label: `${min}-${max}`, min, max, count };
    });
  }
}

/**
 * Index of the bin holding sqrt(area / imageArea). The test "sqrt(area / imageArea) ≥ k/100" is
 * done as "10000·area ≥ k²·imageArea" in integers, so a mask exactly on an edge is never
 * put on the wrong side of it by a rounding error.
 */
function relativeSizeBin(area: number, imageArea: number): number {
  let bin = 0;
  for (let i = 1; i < RELATIVE_SIZE_EDGES_PERCENT.length - 1; i++) {
    const edge = RELATIVE_SIZE_EDGES_PERCENT[i]!;
    if (10_000 * area >= edge * edge * imageArea) bin = i;
  }
  return bin;
}

function cocoSizeClass(area: number): 'small' | 'medium' | 'large' {
  if (area < COCO_SMALL_BELOW) return 'small';
  if (area < COCO_MEDIUM_BELOW) return 'medium';
  return 'large';
}

/** Median of a multiset given as sorted distinct values and how often each occurs. */
function medianOfFrequencies(sortedValues: number[], frequency: Map<number, number>): number {
  const total = sortedValues.reduce((n, v) => n + frequency.get(v)!, 0);
  // The two middle elements (the same one when the total is odd), as 0-based ranks.
  const lowRank = Math.floor((total - 1) / 2);
  const highRank = Math.floor(total / 2);
  let low: number | undefined;
  let seen = 0;
  for (const value of sortedValues) {
    seen += frequency.get(value)!;
    if (low === undefined && seen > lowRank) low = value;
    if (seen > highRank) return (low! + value) / 2;
  }
  throw new Error('unreachable: the ranks lie inside the multiset');
}

function rows(cells: number[], grid: number): number[][] {
  return Array.from({ length: grid }, (_, row) => cells.slice(row * grid, (row + 1) * grid));
}
