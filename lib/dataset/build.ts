// The dataset of a finished stage-3 run (DESIGN.md stage 4, "dataset manifest and statistics"):
//
//   runs/<run>/dataset/manifest.jsonl   one line per segmented image, sorted by id
//   runs/<run>/dataset/failed.jsonl     the images stage 3 could not segment, with their errors
//   runs/<run>/dataset/stats.json       the SAM paper's §5 statistics (lib/dataset/statistics.ts)
//   runs/<run>/dataset/images/<id>.jpg  optional release copies (lib/dataset/release-copy.ts)
//
// It is built like stage 3 ran, one stage-3 shard at a time, so that a million images spread over
// many workers and a retry redoes one shard at most:
//
//   1. buildDatasetShard, once per shard (in parallel, in any order): reads the shard's result lines
//      and each image's SA-1B JSON once, a few images at a time, writes the release copies and
//      stores the shard's manifest lines, failed lines and statistics under dataset/shards/. The
//      summary is stored last, so a shard with a summary is complete and is not built again.
//   2. finishDataset: walks the shards in order, appending their manifest parts to a local temp file
//      (lib/dataset/line-spool.ts) and merging their statistics (fixed-size tables), then stores
//      the three files. Memory holds one shard's parts, never the run's.
//
// Nothing depends on time or on the order in which concurrent reads finish, so building twice
// writes the same bytes.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { z } from 'zod';
import type { ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { runLayout } from '../run-layout.ts';
import { readShardProvenance, type AnnotatedMask } from '../stage1/provenance.ts';
import { readPlan, type ShardPlan } from '../stage3/shard-plan.ts';
import { readShardResult, type ShardResultLine } from '../stage3/shard-runner.ts';
import { LineSpool } from './line-spool.ts';
import type { MaskMoments } from './mask-moments.ts';
import { readMaskMoments, type DoneLine } from './masks-file.ts';
import { writeReleaseCopy, type ReleaseCopy } from './release-copy.ts';
import {
  DatasetStatsAccumulator,
  datasetStatsStateSchema,
  type DatasetStats,
  type ReleaseStats,
} from './statistics.ts';

export type { DatasetStats } from './statistics.ts';
export { releaseSize } from './release-copy.ts';

export interface BuildDatasetOptions {
  runId: string;
  /** Write release copies with this shortest side (the paper: 1500); left out, none are written. */
  release?: { shortestSide: number };
  /** Called after each shard; the object is small. */
  onProgress?: (progress: DatasetProgress) => void;
}

export interface DatasetProgress {
  shardsDone: number;
  shardCount: number;
  images: number;
  imagesFailed: number;
  masks: number;
}

/** Keys and counts only: this goes into a Temporal workflow history. */
export interface DatasetSummary {
  images: number;
  imagesFailed: number;
  masks: number;
  manifestKey: string;
  failedKey: string;
  statsKey: string;
  releaseImages: number;
}

/** One line of manifest.jsonl. */
export interface ManifestLine {
  id: number;
  /** URI of the original image. */
  image: string;
  width: number;
  height: number;
  /** Key of the SA-1B JSON, relative to the run's output store. */
  masks: string;
  count: number;
  /** With release copies: the copy's key and its size relative to the original (masks are not rescaled). */
  releaseImage?: string;
  releaseScale?: number;
  /** Masks people annotated on this image in the engine's rounds, with their provenance. */
  annotated?: AnnotatedMask[];
}

/** One line of failed.jsonl: stage 3 could not segment the image (its human masks still count). */
export interface FailedLine {
  id: number;
  image: string;
  error: string;
  annotated?: AnnotatedMask[];
}

/**
 * The run has no finished stage 3 to build its dataset from: no plan (stage 3 never ran, e.g. the
 * run's config disables it and no earlier run with this id left one), or a shard without its result
 * manifest (e.g. only a dry run planned the shards). A retry cannot fix that, so the workflows list
 * it as non-retryable.
 */
export class NoStage3OutputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoStage3OutputError';
  }
}

/** Images read at once: enough to hide storage latency, few enough to keep memory small. */
const WINDOW = 16;
const MASK_READS = 8;
/** Decoding and resizing a 16 MP image is CPU work; more at once than cores only costs memory. */
const RELEASE_ENCODES = 2;

/** What a finished dataset shard stored beside its parts; its `stats` are merged by finishDataset. */
const shardSummarySchema = z.object({
  run: z.string(),
  shard: z.number().int().nonnegative(),
  release: z.object({ shortestSide: z.number().int().positive() }).nullable(),
  /** Result lines of the shard (segmented and failed), and the first and last image id among them. */
  lines: z.number().int().nonnegative(),
  firstId: z.number().int().nullable(),
  lastId: z.number().int().nullable(),
  releaseImages: z.number().int().nonnegative(),
  /** Stage-1 masks on the shard's manifest lines: a later round's masks make the shard stale. */
  annotatedMasks: z.number().int().nonnegative().default(0),
  stats: datasetStatsStateSchema,
});
type ShardSummary = z.infer<typeof shardSummarySchema>;

/** Counts only: this goes into a Temporal workflow history. */
export interface DatasetShardResult {
  shard: number;
  images: number;
  imagesFailed: number;
  masks: number;
  releaseImages: number;
  /** True when an earlier attempt had built it with the same settings. */
  reused: boolean;
}

export interface BuildDatasetShardOptions {
  runId: string;
  shard: number;
  release?: { shortestSide: number };
  /** Called every few images (e.g. to heartbeat) with the shard's result lines handled so far. */
  onProgress?: (progress: { shard: number; lines: number; linesDone: number }) => void;
}

/** A dataset shard is missing or was built with other settings when the dataset is put together. */
export class DatasetShardError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetShardError';
  }
}

/** Builds one shard's part of the dataset, or returns the part an earlier attempt finished. */
export async function buildDatasetShard(
  out: ObjectStore,
  stores: StoreCache,
  opts: BuildDatasetShardOptions,
): Promise<DatasetShardResult> {
  checkRelease(opts.release);
  const { runId, shard } = opts;
  const release = opts.release ?? null;
  const annotated = await readShardProvenance(out, runId, shard);
  const annotatedMasks = [...annotated.values()].reduce((n, masks) => n + masks.length, 0);
  const earlier = await readShardSummary(out, runId, shard);
  if (earlier && sameRelease(earlier.release, release) && earlier.annotatedMasks === annotatedMasks)
    return shardResult(earlier, true);

  const lines = await readShardLines(out, runId, shard);
  const builder = new ShardBuilder(out, stores, runId, shard, opts.release, annotated);
  for (let start = 0; start < lines.length; start += WINDOW) {
    const window = lines.slice(start, start + WINDOW);
    const prepared = await settleAll(window.map((line) => builder.prepare(line)));
    for (const image of prepared) builder.record(image);
    opts.onProgress?.({ shard, lines: lines.length, linesDone: start + window.length });
  }
  const summary: ShardSummary = {
    run: runId,
    shard,
    release,
    lines: lines.length,
    firstId: lines[0]?.id ?? null,
    lastId: lines.at(-1)?.id ?? null,
    releaseImages: builder.releaseImages,
    annotatedMasks,
    stats: builder.stats.state(),
  };
  const jsonl = { contentType: 'application/x-ndjson' };
  await out.put(runLayout.datasetShardManifest(runId, shard), builder.manifest.join(''), jsonl);
  await out.put(runLayout.datasetShardFailed(runId, shard), builder.failed.join(''), jsonl);
  await out.put(runLayout.datasetShardSummary(runId, shard), JSON.stringify(summary) + '\n', {
    contentType: 'application/json',
  });
  return shardResult(summary, false);
}

export interface FinishDatasetOptions {
  runId: string;
  release?: { shortestSide: number };
  /** Stage 3 left the images before this one to the annotation rounds (stage3.skipAnnotated). */
  firstImage?: number;
  /** Called after each shard is merged, e.g. to heartbeat. */
  onProgress?: (progress: DatasetProgress) => void;
}

/** Puts the built shards together into manifest.jsonl, failed.jsonl and stats.json. */
export async function finishDataset(out: ObjectStore, opts: FinishDatasetOptions): Promise<DatasetSummary> {
  const { runId } = opts;
  const plan = await requireStage3Plan(out, runId);
  const tempDir = await mkdtemp(path.join(tmpdir(), 'sae-dataset-'));
  const manifest = await LineSpool.create(tempDir, 'manifest.jsonl');
  const failed = await LineSpool.create(tempDir, 'failed.jsonl');
  try {
    const stats = new DatasetStatsAccumulator();
    const progress = startProgress(plan.shardCount);
    let lines = 0;
    let releaseImages = 0;
    let lastId: number | null = null;
    for (let shard = 0; shard < plan.shardCount; shard++) {
      const summary = await requireShardSummary(out, runId, shard, opts.release ?? null);
      if (summary.firstId !== null && lastId !== null && summary.firstId <= lastId) {
        throw new Error(
          `shard ${shard} of run ${runId} starts at image ${summary.firstId}, not after ${lastId}`,
        );
      }
      lastId = summary.lastId ?? lastId;
      await manifest.appendLines(await out.get(runLayout.datasetShardManifest(runId, shard)));
      await failed.appendLines(await out.get(runLayout.datasetShardFailed(runId, shard)));
      stats.merge(summary.stats);
      lines += summary.lines;
      releaseImages += summary.releaseImages;
      countShard(progress, summary.stats);
      opts.onProgress?.({ ...progress });
    }
    const expected = plan.imageCount - Math.min(opts.firstImage ?? 0, plan.imageCount);
    if (lines !== expected) {
      const skipped = expected === plan.imageCount ? '' : ` less the ${plan.imageCount - expected} annotated`;
      throw new Error(
        `run ${runId}: the shard results list ${lines} images, the plan ${plan.imageCount}${skipped}`,
      );
    }
    const keys = {
      manifestKey: runLayout.datasetManifest(runId),
      failedKey: runLayout.datasetFailed(runId),
      statsKey: runLayout.datasetStats(runId),
    };
    await manifest.upload(out, keys.manifestKey);
    await failed.upload(out, keys.failedKey);
    const result = stats.result(runId, releaseStats(opts.release, releaseImages));
    await out.put(keys.statsKey, formatStats(result), { contentType: 'application/json' });
    const { images, imagesFailed, masks } = progress;
    return { images, imagesFailed, masks, ...keys, releaseImages };
  } finally {
    await manifest.close();
    await failed.close();
    await rm(tempDir, { recursive: true, force: true });
  }
}

/**
 * The whole dataset in this process: every shard in turn, then the merge. The dataset-build
 * workflow runs the same two steps as activities spread over workers; this is for a single
 * process (tests, the library).
 */
export async function buildDataset(
  out: ObjectStore,
  stores: StoreCache,
  opts: BuildDatasetOptions,
): Promise<DatasetSummary> {
  checkRelease(opts.release);
  const plan = await requireStage3Plan(out, opts.runId);
  const progress = startProgress(plan.shardCount);
  for (let shard = 0; shard < plan.shardCount; shard++) {
    const built = await buildDatasetShard(out, stores, { runId: opts.runId, shard, release: opts.release });
    countShard(progress, built);
    opts.onProgress?.({ ...progress });
  }
  return finishDataset(out, { runId: opts.runId, release: opts.release });
}

function startProgress(shardCount: number): DatasetProgress {
  return { shardsDone: 0, shardCount, images: 0, imagesFailed: 0, masks: 0 };
}

function countShard(
  progress: DatasetProgress,
  shard: { images: number; imagesFailed: number; masks: number },
): void {
  progress.shardsDone += 1;
  progress.images += shard.images;
  progress.imagesFailed += shard.imagesFailed;
  progress.masks += shard.masks;
}

/** The stage-3 plan the dataset is built from, or NoStage3OutputError. */
export async function requireStage3Plan(out: ObjectStore, runId: string): Promise<ShardPlan> {
  const plan = await readPlan(out, runId);
  if (plan) return plan;
  throw new NoStage3OutputError(
    `run ${runId} has no stage-3 plan at ${out.uri(runLayout.stage3Plan(runId))}: ` +
      'the dataset is built from a finished stage 3',
  );
}

function checkRelease(release: BuildDatasetOptions['release']): void {
  if (release && !(Number.isInteger(release.shortestSide) && release.shortestSide >= 1)) {
    throw new RangeError(`release.shortestSide must be a positive integer, got ${release.shortestSide}`);
  }
}

function sameRelease(a: ShardSummary['release'], b: ShardSummary['release']): boolean {
  return (a?.shortestSide ?? null) === (b?.shortestSide ?? null);
}

function shardResult(summary: ShardSummary, reused: boolean): DatasetShardResult {
  const { images, imagesFailed, masks } = summary.stats;
  return { shard: summary.shard, images, imagesFailed, masks, releaseImages: summary.releaseImages, reused };
}

async function readShardSummary(
  out: ObjectStore,
  runId: string,
  shard: number,
): Promise<ShardSummary | undefined> {
  const key = runLayout.datasetShardSummary(runId, shard);
  if (!(await out.exists(key))) return undefined;
  const parsed = shardSummarySchema.safeParse(JSON.parse((await out.get(key)).toString('utf8')));
  // A summary this code cannot read is rebuilt by buildDatasetShard, refused by finishDataset.
  return parsed.success ? parsed.data : undefined;
}

async function requireShardSummary(
  out: ObjectStore,
  runId: string,
  shard: number,
  release: ShardSummary['release'],
): Promise<ShardSummary> {
  const summary = await readShardSummary(out, runId, shard);
  const key = out.uri(runLayout.datasetShardSummary(runId, shard));
  if (!summary)
    throw new DatasetShardError(`dataset shard ${shard} of run ${runId} has not been built (${key})`);
  if (!sameRelease(summary.release, release)) {
    throw new DatasetShardError(
      `dataset shard ${shard} of run ${runId} was built with release copies ${JSON.stringify(summary.release)}, ` +
        `not ${JSON.stringify(release)} (${key})`,
    );
  }
  return summary;
}

function releaseStats(release: BuildDatasetOptions['release'], images: number): ReleaseStats | null {
  if (!release) return null;
  return {
    shortestSide: release.shortestSide,
    images,
    maskResolution: 'original',
    note:
      'Release copies are downscaled (never upscaled) to this shortest side; masks stay at the original ' +
      "resolution. Multiply mask coordinates by the manifest line's releaseScale to draw them on a copy.",
  };
}

/** What one image contributes, gathered concurrently and then recorded in id order. */
type PreparedImage =
  | { kind: 'done'; line: DoneLine; masks: MaskMoments[]; release: ReleaseCopy | undefined }
  | { kind: 'failed'; line: ShardResultLine };

/** One shard's manifest lines, failed lines and statistics, in memory (a shard is small). */
class ShardBuilder {
  readonly stats = new DatasetStatsAccumulator();
  readonly manifest: string[] = [];
  readonly failed: string[] = [];
  releaseImages = 0;
  private readonly maskReads = pLimit(MASK_READS);
  private readonly releaseEncodes = pLimit(RELEASE_ENCODES);

  constructor(
    private readonly out: ObjectStore,
    private readonly stores: StoreCache,
    private readonly runId: string,
    private readonly shard: number,
    private readonly release: { shortestSide: number } | undefined,
    private readonly annotated: ReadonlyMap<number, AnnotatedMask[]>,
  ) {}

  /** Reads the image's masks (and writes its release copy); nothing here touches shared state. */
  async prepare(line: ShardResultLine): Promise<PreparedImage> {
    if (line.status === 'failed') return { kind: 'failed', line };
    const done = asDoneLine(this.shard, line);
    const release = this.release;
    const [masks, copy] = await settleAll([
      this.maskReads(() => readMaskMoments(this.out, done)),
      release
        ? this.releaseEncodes(() =>
            writeReleaseCopy(this.out, this.stores, this.runId, done, release.shortestSide),
          )
        : Promise.resolve(undefined),
    ] as const);
    return { kind: 'done', line: done, masks, release: copy };
  }

  /** Adds one image to the parts and statistics; called in id order. */
  record(image: PreparedImage): void {
    const { line } = image;
    this.stats.addProcessing(line.model, line.ms);
    const annotated = this.annotated.get(line.id);
    if (image.kind === 'failed') {
      this.stats.addFailedImage();
      const failed: FailedLine = { id: line.id, image: line.key, error: line.error ?? 'no error recorded' };
      if (annotated) failed.annotated = annotated;
      this.failed.push(JSON.stringify(failed) + '\n');
      return;
    }
    this.stats.addImage(image.line.w, image.line.h, image.masks);
    if (image.release) this.releaseImages += 1;
    this.manifest.push(JSON.stringify(manifestLine(image.line, image.release, annotated)) + '\n');
  }
}

/**
 * Like Promise.all, but waits for every promise before throwing the first error, so no read or
 * release copy is still running (or failing unobserved) once buildDataset has given up.
 */
async function settleAll<T extends readonly unknown[]>(
  promises: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(promises);
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) throw failure.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}

/** A shard's result lines in id order; a shard without results means stage 3 has not finished. */
async function readShardLines(out: ObjectStore, runId: string, shard: number): Promise<ShardResultLine[]> {
  const lines = await readShardResult(out, runId, shard);
  if (!lines) {
    throw new NoStage3OutputError(
      `shard ${shard} of run ${runId} has no result manifest (${out.uri(runLayout.shardResult(runId, shard))}): ` +
        'stage 3 has not finished it',
    );
  }
  const sorted = [...lines].sort((a, b) => a.id - b.id);
  sorted.forEach((line, i) => {
    if (i > 0 && line.id === sorted[i - 1]!.id) {
      throw new Error(`shard ${shard} of run ${runId} lists image ${line.id} twice`);
    }
  });
  return sorted;
}

/** A "done" line must carry the image size and its masks key; anything else is a broken manifest. */
function asDoneLine(shard: number, line: ShardResultLine): DoneLine {
  const { status, w, h, masks } = line;
  if (status === 'done' && typeof w === 'number' && typeof h === 'number' && typeof masks === 'string') {
    return { ...line, status, w, h, masks };
  }
  throw new Error(
    `shard ${shard}, image ${line.id} (${line.key}): a result line with status "${status}" needs ` +
      `w, h and masks to be a segmented image; got ${JSON.stringify(line)}`,
  );
}

function manifestLine(
  line: DoneLine,
  release: ReleaseCopy | undefined,
  annotated: AnnotatedMask[] | undefined,
): ManifestLine {
  const entry: ManifestLine = {
    id: line.id,
    image: line.key,
    width: line.w,
    height: line.h,
    masks: line.masks,
    count: line.count,
  };
  if (release) {
    entry.releaseImage = release.key;
    entry.releaseScale = release.scale;
  }
  if (annotated) entry.annotated = annotated;
  return entry;
}

/**
 * Pretty JSON, with arrays of numbers (the heatmap rows) and flat objects (histogram bins) each
 * kept on one line, so the file reads as tables.
 */
function formatStats(stats: DatasetStats): string {
  const numberArray = /\[\s*([-\d.e+]+(?:,\s*[-\d.e+]+)*)\s*\]/g;
  const flatObject = /\{\s*([^{}[\]]*?)\s*\}/g;
  return (
    JSON.stringify(stats, null, 2)
      .replace(numberArray, (_, inner: string) => `[${inner.split(/,\s*/).join(', ')}]`)
      .replace(flatObject, (_, inner: string) => `{ ${inner.split(/,\n\s*/).join(', ')} }`) + '\n'
  );
}
