// The dataset of a finished stage-3 run (DESIGN.md stage 4, "dataset manifest and statistics"):
//
//   runs/<run>/dataset/manifest.jsonl   one line per segmented image, sorted by id
//   runs/<run>/dataset/failed.jsonl     the images stage 3 could not segment, with their errors
//   runs/<run>/dataset/stats.json       the SAM paper's §5 statistics (lib/dataset/statistics.ts)
//   runs/<run>/dataset/images/<id>.jpg  optional release copies (lib/dataset/release-copy.ts)
//
// It walks the shards' result manifests in order and reads each image's SA-1B JSON once, a few
// images at a time, keeping only counters and fixed-size tables; the manifest lines go to a local
// temp file (lib/dataset/line-spool.ts). Nothing depends on time or on the order in which
// concurrent reads finish, so running it twice writes the same bytes.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import type { ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { runLayout } from '../run-layout.ts';
import { readPlan } from '../stage3/shard-plan.ts';
import { readShardResult, type ShardResultLine } from '../stage3/shard-runner.ts';
import { LineSpool } from './line-spool.ts';
import type { MaskMoments } from './mask-moments.ts';
import { readMaskMoments, type DoneLine } from './masks-file.ts';
import { writeReleaseCopy, type ReleaseCopy } from './release-copy.ts';
import { DatasetStatsAccumulator, type DatasetStats, type ReleaseStats } from './statistics.ts';

export type { DatasetStats } from './statistics.ts';
export { releaseSize } from './release-copy.ts';

export interface BuildDatasetOptions {
  runId: string;
  /** Write release copies with this shortest side (the paper: 1500); left out, none are written. */
  release?: { shortestSide: number };
  /** Called every few images, e.g. to heartbeat; the object is small. */
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
}

/** One line of failed.jsonl. */
export interface FailedLine {
  id: number;
  image: string;
  error: string;
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

export async function buildDataset(
  out: ObjectStore,
  stores: StoreCache,
  opts: BuildDatasetOptions,
): Promise<DatasetSummary> {
  checkRelease(opts.release);
  const plan = await readPlan(out, opts.runId);
  if (!plan) {
    throw new NoStage3OutputError(
      `run ${opts.runId} has no stage-3 plan at ${out.uri(runLayout.stage3Plan(opts.runId))}: ` +
        'the dataset is built from a finished stage 3',
    );
  }
  const tempDir = await mkdtemp(path.join(tmpdir(), 'sae-dataset-'));
  try {
    const builder = await DatasetBuilder.create(out, stores, opts, plan.shardCount, tempDir);
    try {
      for (let shard = 0; shard < plan.shardCount; shard++) await builder.addShard(shard);
      return await builder.finish(plan.imageCount);
    } finally {
      await builder.close();
    }
  } finally {
    await rm(tempDir, { recursive: true, force: true });
  }
}

function checkRelease(release: BuildDatasetOptions['release']): void {
  if (release && !(Number.isInteger(release.shortestSide) && release.shortestSide >= 1)) {
    throw new RangeError(`release.shortestSide must be a positive integer, got ${release.shortestSide}`);
  }
}

/** What one image contributes, gathered concurrently and then recorded in id order. */
type PreparedImage =
  | { kind: 'done'; line: DoneLine; masks: MaskMoments[]; release: ReleaseCopy | undefined }
  | { kind: 'failed'; line: ShardResultLine };

class DatasetBuilder {
  private readonly stats = new DatasetStatsAccumulator();
  private readonly progress: DatasetProgress;
  private readonly maskReads = pLimit(MASK_READS);
  private readonly releaseEncodes = pLimit(RELEASE_ENCODES);
  private lastId = -1;
  private lines = 0;
  private releaseImages = 0;

  private constructor(
    private readonly out: ObjectStore,
    private readonly stores: StoreCache,
    private readonly opts: BuildDatasetOptions,
    private readonly manifest: LineSpool,
    private readonly failed: LineSpool,
    shardCount: number,
  ) {
    this.progress = { shardsDone: 0, shardCount, images: 0, imagesFailed: 0, masks: 0 };
  }

  static async create(
    out: ObjectStore,
    stores: StoreCache,
    opts: BuildDatasetOptions,
    shardCount: number,
    tempDir: string,
  ): Promise<DatasetBuilder> {
    const manifest = await LineSpool.create(tempDir, 'manifest.jsonl');
    const failed = await LineSpool.create(tempDir, 'failed.jsonl');
    return new DatasetBuilder(out, stores, opts, manifest, failed, shardCount);
  }

  async addShard(shard: number): Promise<void> {
    const lines = await readShardLines(this.out, this.opts.runId, shard);
    const first = lines[0];
    if (first && first.id <= this.lastId) {
      throw new Error(
        `shard ${shard} of run ${this.opts.runId} starts at image ${first.id}, not after ${this.lastId}`,
      );
    }
    for (let start = 0; start < lines.length; start += WINDOW) {
      const window = lines.slice(start, start + WINDOW);
      const prepared = await settleAll(window.map((line) => this.prepare(shard, line)));
      for (const image of prepared) await this.record(image);
      this.opts.onProgress?.({ ...this.progress });
    }
    this.lastId = lines.at(-1)?.id ?? this.lastId;
    this.lines += lines.length;
    this.progress.shardsDone += 1;
    this.opts.onProgress?.({ ...this.progress });
  }

  /** Reads the image's masks (and writes its release copy); nothing here touches shared state. */
  private async prepare(shard: number, line: ShardResultLine): Promise<PreparedImage> {
    if (line.status === 'failed') return { kind: 'failed', line };
    const done = asDoneLine(shard, line);
    const release = this.opts.release;
    const [masks, copy] = await settleAll([
      this.maskReads(() => readMaskMoments(this.out, done)),
      release
        ? this.releaseEncodes(() =>
            writeReleaseCopy(this.out, this.stores, this.opts.runId, done, release.shortestSide),
          )
        : Promise.resolve(undefined),
    ] as const);
    return { kind: 'done', line: done, masks, release: copy };
  }

  /** Adds one image to the manifests and statistics; called in id order. */
  private async record(image: PreparedImage): Promise<void> {
    const { line } = image;
    this.stats.addProcessing(line.model, line.ms);
    if (image.kind === 'failed') {
      this.stats.addFailedImage();
      this.progress.imagesFailed += 1;
      await this.failed.push({
        id: line.id,
        image: line.key,
        error: line.error ?? 'no error recorded',
      } satisfies FailedLine);
      return;
    }
    this.stats.addImage(image.line.w, image.line.h, image.masks);
    this.progress.images += 1;
    this.progress.masks += image.masks.length;
    if (image.release) this.releaseImages += 1;
    await this.manifest.push(manifestLine(image.line, image.release));
  }

  async finish(imageCount: number): Promise<DatasetSummary> {
    const run = this.opts.runId;
    if (this.lines !== imageCount) {
      throw new Error(`run ${run}: the shard results list ${this.lines} images, the plan ${imageCount}`);
    }
    const keys = {
      manifestKey: runLayout.datasetManifest(run),
      failedKey: runLayout.datasetFailed(run),
      statsKey: runLayout.datasetStats(run),
    };
    await this.manifest.upload(this.out, keys.manifestKey);
    await this.failed.upload(this.out, keys.failedKey);
    const stats = this.stats.result(run, this.releaseStats());
    await this.out.put(keys.statsKey, formatStats(stats), { contentType: 'application/json' });
    const { images, imagesFailed, masks } = this.progress;
    return { images, imagesFailed, masks, ...keys, releaseImages: this.releaseImages };
  }

  private releaseStats(): ReleaseStats | null {
    if (!this.opts.release) return null;
    return {
      shortestSide: this.opts.release.shortestSide,
      images: this.releaseImages,
      maskResolution: 'original',
      note:
        'Release copies are downscaled (never upscaled) to this shortest side; masks stay at the original ' +
        "resolution. Multiply mask coordinates by the manifest line's releaseScale to draw them on a copy.",
    };
  }

  async close(): Promise<void> {
    await this.manifest.close();
    await this.failed.close();
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

function manifestLine(line: DoneLine, release: ReleaseCopy | undefined): ManifestLine {
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
