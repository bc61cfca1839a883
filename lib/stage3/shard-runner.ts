// Runs the automatic mask generator over one shard. It streams through the shard manifest in
// batches; after each batch it writes that batch's result lines to their own part file and reports
// the next position, so a retry after a crash resumes at the first unfinished batch and rewrites
// only that batch's outputs (same keys, so nothing is duplicated). A failing image is recorded with
// its error and does not fail the shard. At the end the parts become the shard's result manifest.
//
// Poison images. An image that kills the worker process (a native crash, the OOM killer) or hangs
// it would be retried with its batch forever, taking a worker down each time. So a retried attempt
// (`watchForCrashes`) writes a small marker naming the image it is about to work on before each
// image; an attempt that dies leaves it behind. The next attempt reads it, adds one death to that
// image, and once an image has `crashLimit` deaths in a row it is recorded as failed without being
// touched again; its batch is otherwise redone as usual, so every image still has exactly one line.
// The marker lives in storage, not in a heartbeat: heartbeats are throttled (up to 80% of the
// heartbeat timeout), so the last one the server kept may name an image several images back.
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { fingerprintOf, inputDifferences, type Fingerprint } from '../fingerprint.ts';
import { runLayout } from '../run-layout.ts';
import { readShardEntries, type ShardEntry } from './shard-plan.ts';
import { checkImageBytes, DEFAULT_MAX_IMAGE_BYTES } from '../images/image-io.ts';

/** Deaths of the worker at one image (over consecutive attempts) before it is skipped as failed. */
export const DEFAULT_CRASH_LIMIT = 3;
/** Images downloaded ahead of the one being segmented; with the byte limit this bounds the memory. */
export const PREFETCH_IMAGES = 2;

/** The result lines of a shard do not cover its manifest: part files were lost or never written. */
export class ShardPartsMissingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShardPartsMissingError';
  }
}

/** What the shard runner needs from the AMG: one image in, one SA-1B per-image JSON out. */
export interface ImageSegmenter {
  readonly modelId: string;
  /** `progress`, if given, is called as work on the image moves (e.g. per crop): it keeps the shard alive. */
  segment(
    bytes: Buffer,
    image: { id: number; fileName: string },
    progress?: () => void,
  ): Promise<SegmentedImage>;
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
  /** Entries with a smaller image id are left out (the annotation rounds took them). */
  firstImage?: number;
  segmenter: ImageSegmenter;
  /** First manifest index not yet covered by a part file (from the last heartbeat); 0 to start. */
  resumeFrom: number;
  /** Called after each batch with the next index to process: heartbeat it. */
  onBatchDone?: (nextIndex: number, counts: ShardCounts) => void;
  /** Called with an image's manifest index as work on it starts: heartbeat it. */
  onImage?: (index: number) => void;
  /** Called whenever work moves: an image fetched, started, finished, or the segmenter's own progress. */
  onProgress?: () => void;
  /**
   * Checked between images and raced against each image's work: an abort (cancellation, or a stall
   * seen by the caller) stops the shard at once with the signal's reason, even mid-image.
   */
  signal?: AbortSignal;
  /** A retry: mark each image in storage before working on it, so that a crash is pinned on it. */
  watchForCrashes?: boolean;
  /** Deaths at one image before it is recorded as failed; default DEFAULT_CRASH_LIMIT. */
  crashLimit?: number;
  /** Images over this many bytes are recorded as failed before download; default 256 MiB. */
  maxImageBytes?: number;
  /**
   * What the masks are made with (model, generator settings). Recorded with the shard's first
   * part; parts or a result made with other settings are refused, never mixed in.
   */
  settings: Record<string, unknown>;
}

/** A shard's workflow failed for good; seen by a later run of the stage that inherited the shard. */
export class ShardFailedError extends Error {
  constructor(workflowId: string, reason: string) {
    super(`shard workflow ${workflowId} failed: ${reason}`);
    this.name = 'ShardFailedError';
  }
}

/** The shard already holds masks made with other settings (or by an sa-engine that kept none). */
export class ShardSettingsMismatchError extends Error {
  constructor(where: string, ...differences: string[]) {
    super(
      `${where}: the shard's finished masks were made with other settings (${differences.join('; ')}). ` +
        "Give the run a new id, or delete that run's stage3 folder to segment it afresh.",
    );
    this.name = 'ShardSettingsMismatchError';
  }
}

export async function runShard(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunShardOptions,
): Promise<ShardCounts> {
  await claimShard(out, opts);
  const done = await readShardResult(out, opts.runId, opts.shard);
  if (done) return countLines(done, done.length); // finished before a crash; the retry just reports
  const entries = (await readShardEntries(out, opts.runId, opts.shard)).filter(
    (entry) => entry.id >= (opts.firstImage ?? 0),
  );
  const watch = await CrashWatch.load(out, opts);
  try {
    for (
      let start = alignToBatch(opts.resumeFrom, opts.batchImages);
      start < entries.length;
      start += opts.batchImages
    ) {
      const batch = entries.slice(start, start + opts.batchImages);
      const lines = await segmentBatch(out, stores, opts, watch, start, batch);
      await out.put(
        runLayout.shardPart(opts.runId, opts.shard, start),
        lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
      );
      opts.onBatchDone?.(start + batch.length, countLines(lines, entries.length));
    }
  } catch (err) {
    // A stall is pinned on the image in hand, as a crash would be; a storage outage, a cancellation
    // or any other error that reaches here says nothing against it.
    if (err instanceof ShardStalledError) await watch.pinHere().catch(() => undefined);
    else await watch.clear().catch(() => undefined);
    throw err;
  }
  await watch.clear(); // before the result: a crash in between only redoes the last batch
  return finishShard(out, opts.runId, opts.shard, entries.length);
}

/** The marker of a watched attempt: the image in hand, and the deaths seen so far per image. */
interface CrashMarker {
  index: number;
  deaths: Record<string, number>;
}

/** Not part of the parts' file names (nine digits + .jsonl), so finishShard never reads it. */
function crashMarkerKey(runId: string, shard: number): string {
  return runLayout.shardPartsPrefix(runId, shard) + 'in-flight.json';
}

class CrashWatch {
  /** The image in hand (its manifest index), once one was entered. */
  private current: number | undefined;

  private constructor(
    private readonly out: ObjectStore,
    private readonly key: string,
    private readonly watching: boolean,
    private readonly deaths: Record<string, number>,
    readonly limit: number,
  ) {}

  /** Reads the marker a dead attempt left, if any, and counts that death against its image. */
  static async load(out: ObjectStore, opts: RunShardOptions): Promise<CrashWatch> {
    const key = crashMarkerKey(opts.runId, opts.shard);
    const limit = opts.crashLimit ?? DEFAULT_CRASH_LIMIT;
    const marker = (await out.exists(key))
      ? (JSON.parse((await out.get(key)).toString('utf8')) as CrashMarker)
      : undefined;
    // Images already found poison stay so (a second poison in the same batch must not bring the
    // first back); for the others only deaths in a row count, so just the marker's image goes on.
    const deaths: Record<string, number> = Object.fromEntries(
      Object.entries(marker?.deaths ?? {}).filter(([, n]) => n >= limit),
    );
    if (marker) deaths[marker.index] = (marker.deaths[marker.index] ?? 0) + 1;
    return new CrashWatch(out, key, opts.watchForCrashes === true || marker !== undefined, deaths, limit);
  }

  /** Deaths of the worker at this image in consecutive attempts, if it reached the limit. */
  poisoned(index: number): number | undefined {
    const n = this.deaths[index] ?? 0;
    return n >= this.limit ? n : undefined;
  }

  /** Marks `index` as the image in hand; a crash from here on is pinned on it. */
  async enter(index: number): Promise<void> {
    this.current = index;
    if (this.watching) await this.write(index);
  }

  /** Leaves the marker on the image in hand, watched or not (a stall: this attempt knows where). */
  async pinHere(): Promise<void> {
    if (this.current !== undefined) await this.write(this.current);
  }

  async clear(): Promise<void> {
    if (this.watching) await this.out.delete(this.key);
  }

  private async write(index: number): Promise<void> {
    const marker: CrashMarker = { index, deaths: this.deaths };
    await this.out.put(this.key, JSON.stringify(marker), { contentType: 'application/json' });
  }
}

/** Raised through the signal by a caller that saw no progress for too long (see activities/stage3.ts). */
export class ShardStalledError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShardStalledError';
  }
}

/** A resume point is always a batch start: partial batches are redone whole. */
function alignToBatch(index: number, batchImages: number): number {
  return Math.max(0, Math.floor(index / batchImages) * batchImages);
}

async function segmentBatch(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunShardOptions,
  watch: CrashWatch,
  start: number,
  batch: ShardEntry[],
): Promise<ShardResultLine[]> {
  // Images are downloaded a few ahead while the model works through them one by one; at most
  // PREFETCH_IMAGES + 1 are held at a time, each under the byte limit.
  const maxBytes = opts.maxImageBytes ?? DEFAULT_MAX_IMAGE_BYTES;
  const fetches: (Promise<Buffer | Error> | undefined)[] = [];
  const fetchAhead = (from: number) => {
    for (let j = from; j < Math.min(batch.length, from + PREFETCH_IMAGES + 1); j++) {
      fetches[j] ??= fetchImage(stores, batch[j]!, maxBytes, opts.onProgress);
    }
  };
  const lines: ShardResultLine[] = [];
  for (const [i, entry] of batch.entries()) {
    opts.signal?.throwIfAborted();
    const deaths = watch.poisoned(start + i);
    if (deaths !== undefined) {
      lines.push(poisonedLine(opts, entry, deaths));
      continue;
    }
    fetchAhead(i);
    await watch.enter(start + i);
    opts.onImage?.(start + i);
    opts.onProgress?.();
    lines.push(await segmentOne(out, opts, entry, fetches[i]!));
    fetches[i] = Promise.resolve(new Error('released')); // let the bytes go
    opts.onProgress?.();
  }
  return lines;
}

function poisonedLine(opts: RunShardOptions, entry: ShardEntry, deaths: number): ShardResultLine {
  return {
    key: entry.uri,
    id: entry.id,
    model: opts.segmenter.modelId,
    status: 'failed',
    error:
      `WorkerCrashError: ${entry.uri} crashed (or hung) the worker ${deaths} times in a row; ` +
      'recorded as failed and not tried again',
    count: 0,
    ms: 0,
  };
}

async function fetchImage(
  stores: StoreCache,
  entry: ShardEntry,
  maxBytes: number,
  onProgress?: () => void,
): Promise<Buffer | Error> {
  try {
    const { store, key } = stores.locate(entry.uri);
    const name = entry.uri.slice(entry.uri.lastIndexOf('/') + 1);
    // The size first: a file over the limit is refused without being downloaded.
    const head = await store.head(key);
    if (head === undefined) throw new ObjectNotFoundError(entry.uri, undefined, 'image');
    checkImageBytes(name, head.size, maxBytes);
    const bytes = await store.get(key);
    checkImageBytes(name, bytes.length, maxBytes); // replaced between the HEAD and the GET
    onProgress?.();
    return bytes;
  } catch (err) {
    return notFoundAsImage(err, entry.uri);
  }
}

/** "image not found: <uri>" instead of the store's "object not found", or a raw ENOENT. */
function notFoundAsImage(err: unknown, uri: string): Error {
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof ObjectNotFoundError || code === 'ENOENT' || code === 'ENOTDIR') {
    return new ObjectNotFoundError(uri, err, 'image');
  }
  return err as Error;
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
    const result = await abortable(
      opts.segmenter.segment(bytes, { id: entry.id, fileName }, opts.onProgress),
      opts.signal,
    );
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
    if (opts.signal?.aborted) throw opts.signal.reason; // cancelled or stalled: not the image's fault
    return { ...base, status: 'failed', error: describe(err), count: 0, ms: elapsed(started) };
  }
}

/** The promise, or the signal's reason as soon as it aborts (the promise is left to itself). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
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

/** A batch's part file (the crash watch's marker sits beside them). */
const PART_FILE = /\/\d{9}\.jsonl$/;

/**
 * Records the settings this shard's masks are made with, or checks them against those recorded:
 * a resumed or retried shard goes on only with the settings its finished parts were made with.
 */
async function claimShard(out: ObjectStore, opts: RunShardOptions): Promise<void> {
  const key = runLayout.shardSettings(opts.runId, opts.shard);
  const current = fingerprintOf(opts.settings);
  const body = JSON.stringify(current, null, 2) + '\n';
  if (!(await out.exists(key))) {
    if (await hasOutput(out, opts.runId, opts.shard))
      throw new ShardSettingsMismatchError(
        out.uri(key),
        ...['made by an sa-engine that did not record them'],
      );
    if (await out.putIfAbsent(key, body, { contentType: 'application/json' })) return;
  }
  const stored = JSON.parse((await out.get(key)).toString('utf8')) as Partial<Fingerprint>;
  if (stored.fingerprint === current.fingerprint) return;
  throw new ShardSettingsMismatchError(
    out.uri(key),
    ...inputDifferences(stored.inputs ?? {}, current.inputs),
  );
}

async function hasOutput(out: ObjectStore, runId: string, shard: number): Promise<boolean> {
  if (await out.exists(runLayout.shardResult(runId, shard))) return true;
  for await (const key of out.listKeys(runLayout.shardPartsPrefix(runId, shard)))
    if (PART_FILE.test(key)) return true;
  return false;
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
  for await (const key of out.listKeys(runLayout.shardPartsPrefix(runId, shard))) {
    if (PART_FILE.test(key)) partKeys.push(key);
  }
  partKeys.sort(); // zero-padded batch starts: lexical order is manifest order
  const lines: ShardResultLine[] = [];
  for (const key of partKeys) {
    lines.push(...parseJsonLines<ShardResultLine>((await out.get(key)).toString('utf8')));
  }
  if (lines.length !== images) {
    throw new ShardPartsMissingError(
      `shard ${shard} of run ${runId}: ${lines.length} result lines for ${images} images; parts are missing`,
    );
  }
  await out.put(runLayout.shardResult(runId, shard), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  for (const key of partKeys) await out.delete(key);
  return countLines(lines, images);
}
