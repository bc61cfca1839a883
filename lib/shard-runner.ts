// Runs the automatic mask generator over one shard. It streams through the shard manifest in
// batches; after each batch it writes that batch's result lines to their own part file and reports
// the next position, so a retry after a crash resumes at the first unfinished batch and rewrites
// only that batch's outputs (same keys, so nothing is duplicated). A failing image is recorded with
// its error and does not fail the shard. At the end the parts become the shard's result manifest.
import pLimit from 'p-limit';
import type { ObjectStore } from './object-store.ts';
import type { StoreCache } from './object-uri.ts';
import { runLayout } from './run-layout.ts';
import { readShardEntries, type ShardEntry } from './shard-plan.ts';

/** What the shard runner needs from the AMG: one image in, one SA-1B per-image JSON out. */
export interface ImageSegmenter {
  readonly modelId: string;
  segment(bytes: Buffer, image: { id: number; fileName: string }): Promise<SegmentedImage>;
}

export interface SegmentedImage {
  width: number;
  height: number;
  /** SA-1B per-image JSON (sam-spec §4), ready to store. */
  sa1b: { annotations: unknown[] };
}

export interface ShardResultLine {
  key: string;
  id: number;
  w?: number;
  h?: number;
  status: 'done' | 'failed';
  error?: string;
  masks?: string;
  count: number;
  model: string;
  ms: number;
}

export interface ShardCounts {
  images: number;
  done: number;
  failed: number;
  masks: number;
}

export interface RunShardOptions {
  runId: string;
  shard: number;
  batchImages: number;
  segmenter: ImageSegmenter;
  /** First manifest index not yet covered by a part file (from the last heartbeat); 0 to start. */
  resumeFrom: number;
  /** Called after each batch with the next index to process: heartbeat it. */
  onBatchDone?: (nextIndex: number, counts: ShardCounts) => void;
  /** Checked between images; cancellation stops at the next image boundary. */
  signal?: AbortSignal;
}

export async function runShard(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunShardOptions,
): Promise<ShardCounts> {
  const done = await readShardResult(out, opts.runId, opts.shard);
  if (done) return countLines(done, done.length); // finished before a crash; the retry just reports
  const entries = await readShardEntries(out, opts.runId, opts.shard);
  for (
    let start = alignToBatch(opts.resumeFrom, opts.batchImages);
    start < entries.length;
    start += opts.batchImages
  ) {
    const batch = entries.slice(start, start + opts.batchImages);
    const lines = await segmentBatch(out, stores, opts, batch);
    await out.put(
      runLayout.shardPart(opts.runId, opts.shard, start),
      lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
    );
    opts.onBatchDone?.(start + batch.length, countLines(lines, entries.length));
  }
  return finishShard(out, opts.runId, opts.shard, entries.length);
}

/** A resume point is always a batch start: partial batches are redone whole. */
function alignToBatch(index: number, batchImages: number): number {
  return Math.max(0, Math.floor(index / batchImages) * batchImages);
}

async function segmentBatch(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunShardOptions,
  batch: ShardEntry[],
): Promise<ShardResultLine[]> {
  // Fetch the batch's images concurrently while the model works through them one by one.
  const fetchLimit = pLimit(4);
  const fetches = batch.map((entry) => fetchLimit(() => fetchImage(stores, entry)));
  const lines: ShardResultLine[] = [];
  for (const [i, entry] of batch.entries()) {
    opts.signal?.throwIfAborted();
    lines.push(await segmentOne(out, opts, entry, fetches[i]!));
  }
  return lines;
}

async function fetchImage(stores: StoreCache, entry: ShardEntry): Promise<Buffer | Error> {
  try {
    const { store, key } = stores.locate(entry.uri);
    return await store.get(key);
  } catch (err) {
    return err as Error;
  }
}

async function segmentOne(
  out: ObjectStore,
  opts: RunShardOptions,
  entry: ShardEntry,
  fetched: Promise<Buffer | Error>,
): Promise<ShardResultLine> {
  const started = performance.now();
  const base = { key: entry.uri, id: entry.id, model: opts.segmenter.modelId };
  try {
    const bytes = await fetched;
    if (bytes instanceof Error) throw bytes;
    const fileName = entry.uri.slice(entry.uri.lastIndexOf('/') + 1);
    const result = await opts.segmenter.segment(bytes, { id: entry.id, fileName });
    const masksKey = runLayout.masks(opts.runId, entry.id);
    await out.put(masksKey, JSON.stringify(result.sa1b), { contentType: 'application/json' });
    const count = result.sa1b.annotations.length;
    return {
      ...base,
      w: result.width,
      h: result.height,
      status: 'done',
      masks: masksKey,
      count,
      ms: elapsed(started),
    };
  } catch (err) {
    if (isRetryableInfraError(err)) throw err; // storage outages fail the attempt; the retry resumes here
    return { ...base, status: 'failed', error: describe(err), count: 0, ms: elapsed(started) };
  }
}

/** Errors that say nothing about the image: a retry of the activity is the right answer. */
function isRetryableInfraError(err: unknown): boolean {
  return (
    typeof err === 'object' &&
    err !== null &&
    'retryable' in err &&
    (err as { retryable: unknown }).retryable === true
  );
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

function countLines(lines: ShardResultLine[], images: number): ShardCounts {
  const done = lines.filter((l) => l.status === 'done');
  return {
    images,
    done: done.length,
    failed: lines.length - done.length,
    masks: done.reduce((n, l) => n + l.count, 0),
  };
}

export async function readShardResult(
  out: ObjectStore,
  runId: string,
  shard: number,
): Promise<ShardResultLine[] | undefined> {
  const key = runLayout.shardResult(runId, shard);
  if (!(await out.exists(key))) return undefined;
  return parseJsonLines<ShardResultLine>((await out.get(key)).toString('utf8'));
}

function parseJsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

/** Concatenates the part files in order into the result manifest, then removes them. */
async function finishShard(
  out: ObjectStore,
  runId: string,
  shard: number,
  images: number,
): Promise<ShardCounts> {
  const partKeys: string[] = [];
  for await (const key of out.listKeys(runLayout.shardPartsPrefix(runId, shard))) partKeys.push(key);
  partKeys.sort(); // zero-padded batch starts: lexical order is manifest order
  const lines: ShardResultLine[] = [];
  for (const key of partKeys) {
    lines.push(...parseJsonLines<ShardResultLine>((await out.get(key)).toString('utf8')));
  }
  if (lines.length !== images) {
    throw new Error(
      `shard ${shard} of run ${runId}: ${lines.length} result lines for ${images} images; parts are missing`,
    );
  }
  await out.put(runLayout.shardResult(runId, shard), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  for (const key of partKeys) await out.delete(key);
  return countLines(lines, images);
}
