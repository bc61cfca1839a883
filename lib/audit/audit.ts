// The quality audit of a finished stage 3 (DESIGN.md stage 4; the paper's §5 mask-quality check),
// in three steps that a workflow runs as activities (workflows/audit.ts) and runAudit runs in turn:
//
//   1. drawAuditSample: a seeded sample of the images stage 3 segmented that have human masks in
//      the reference (same seed → same images), drawn in one pass over the shards (./sample.ts);
//      written in chunks, each image with its reference entry (./reference.ts), so the reference
//      is read here and nowhere else: audit/sample.json and audit/sample/<k>.json;
//   2. auditChunk, per chunk: match each image's automatic masks with the human ones (./match.ts)
//      and store what the figures need, audit/matched/<k>.json. A chunk whose input has not
//      changed is not matched again, so a retried or resumed audit redoes only the rest;
//   3. finishAudit: compute the figures (./figures.ts), check them against the gate (./gate.ts),
//      write audit/rows.jsonl, gallery/*.jpg, report.json, and report.html last.
//
// Memory holds the sample (at most audit.sampleSize images), never the run's list of images, and
// the reference's image names, never its annotations beyond the sample's. The audit only ever
// writes under runs/<run>/audit/. What the steps return is small enough for a workflow history;
// the workflow throws AuditGateError on a failed gate.
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import type { AuditConfig, MaskSourceConfig } from '../run-config.ts';
import { runLayout } from '../run-layout.ts';
import { rleArea } from '../rle.ts';
import { readAutomaticMasks } from './automatic.ts';
import { AuditInputError, AuditSampleError } from './errors.ts';
import { computeFigures, countSummary, mean, type AutoRecord, type HumanRecord } from './figures.ts';
import { evaluateGate, type GateResult } from './gate.ts';
import { matchImage } from './match.ts';
import { renderOverlay } from './overlay.ts';
import { renderReportHtml } from './report-html.ts';
import { PAPER_FIGURES, type AuditReport, type AuditRow, type GalleryEntry } from './report.ts';
import {
  loadHumanMasks,
  openReference,
  type HumanMasks,
  type ReferenceEntry,
  type ReferenceSet,
} from './reference.ts';
import { drawAuditSample, uriFileName, type AuditSample, type DoneLine } from './sample.ts';
import { readRunStats } from './run-stats.ts';

export { AuditGateError, AuditInputError, AuditSampleError } from './errors.ts';
export type { AuditReport, AuditRow } from './report.ts';

export interface RunAuditOptions {
  runId: string;
  audit: AuditConfig;
  /**
   * Whether the reference draws every object of its images (then precision is meaningful). The
   * run config has no such field yet; `audit.reference.exhaustive` is read too if it appears.
   */
  exhaustive?: boolean;
  /** Images per chunk of the sample (one auditChunk each); default AUDIT_CHUNK_IMAGES. */
  chunkImages?: number;
  /** Images in the report's gallery of worst cases; default 8. */
  galleryImages?: number;
  /** Called every image or so, e.g. to heartbeat; the object is small. */
  onProgress?: (progress: AuditProgress) => void;
}

/** Bytes or keys of the reference read (total 0: unknown), shards while sampling, else images. */
export interface AuditProgress {
  phase: 'reference' | 'sampling' | 'matching' | 'gallery' | 'writing';
  done: number;
  total: number;
}

/** Keys and headline figures only: this goes into a workflow history. */
export interface AuditSummary {
  runId: string;
  reportJsonKey: string;
  reportHtmlKey: string;
  rowsKey: string;
  imagesAudited: number;
  humanMasks: number;
  automaticMasks: number;
  shareAbove090: number | null;
  shareAbove075: number | null;
  meanIou: number | null;
  referenceImagesUnmatched: number;
  runImagesWithoutReference: number;
  gate: GateResult;
}

const DEFAULT_GALLERY_IMAGES = 8;
const WORST_ROWS_IN_REPORT = 20;
/** Images matched at once: overlaps storage reads with matching; 2 CPU cores do the rest. */
const CONCURRENT_IMAGES = 4;

/** What drawAuditSample returns: how many chunks to audit. */
export interface DrawnSample {
  runId: string;
  images: number;
  chunks: number;
}

/** Images per chunk: one activity's worth of matching, a minute or so on 2 cores. */
export const AUDIT_CHUNK_IMAGES = 50;

/** audit/sample.json: what the draw found, for the report. */
interface StoredSample {
  run: string;
  reference: {
    uri: string;
    format: MaskSourceConfig['format'];
    ignoreValue: number | null;
    images: number;
    unmatchedImages: number;
  };
  drawn: Omit<AuditSample, 'sample' | 'examples'>;
  images: number;
  chunks: number;
}

/** audit/sample/<k>.json: a chunk of the sample, each image with where its human masks are. */
interface SampleChunk {
  images: Array<{ line: DoneLine; reference: ReferenceEntry }>;
}

/** audit/matched/<k>.json: a chunk's matches; `input` is the digest of the chunk it matched. */
interface MatchedChunk {
  input: string;
  images: AuditedImage[];
}

export async function runAudit(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunAuditOptions,
): Promise<AuditSummary> {
  const drawn = await drawSample(out, stores, opts);
  for (let chunk = 0; chunk < drawn.chunks; chunk++) await auditChunk(out, stores, opts, chunk);
  return finishAudit(out, stores, opts);
}

/** Step 1: draws the sample and writes it in chunks with the reference entries of its images. */
export async function drawSample(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunAuditOptions,
): Promise<DrawnSample> {
  const source = requireReference(out, opts);
  const reference = await openReference(stores, source, (count) =>
    opts.onProgress?.({ phase: 'reference', done: count, total: 0 }),
  );
  const matchedReferences = new Set<string>();
  const drawn = await drawAuditSample(
    out,
    opts.runId,
    (line) => {
      const name = reference.find(line.key);
      if (name !== undefined) matchedReferences.add(name);
      return name !== undefined;
    },
    opts.audit.sampleSize,
    opts.audit.seed,
    (shard, shards) => opts.onProgress?.({ phase: 'sampling', done: shard + 1, total: shards }),
  );
  requireCandidates(drawn, reference);
  const { sample, examples: _examples, ...counts } = drawn;
  const entries = await reference.entries(sample);
  const chunkImages = opts.chunkImages ?? AUDIT_CHUNK_IMAGES;
  const chunks = Math.ceil(sample.length / chunkImages);
  for (let chunk = 0; chunk < chunks; chunk++) {
    const first = chunk * chunkImages;
    const images = sample
      .slice(first, first + chunkImages)
      .map((line, i) => ({ line, reference: entries[first + i]! }));
    await out.put(
      runLayout.auditSampleChunk(opts.runId, chunk),
      JSON.stringify({ images } satisfies SampleChunk),
      {
        contentType: 'application/json',
      },
    );
  }
  const stored: StoredSample = {
    run: opts.runId,
    reference: {
      uri: reference.uri,
      format: source.format,
      ignoreValue: source.ignoreValue,
      images: reference.imageCount,
      unmatchedImages: reference.imageCount - matchedReferences.size,
    },
    drawn: counts,
    images: sample.length,
    chunks,
  };
  await out.put(runLayout.auditSample(opts.runId), JSON.stringify(stored, null, 2) + '\n', {
    contentType: 'application/json',
  });
  await removeChunksFrom(out, runLayout.auditSamplePrefix(opts.runId), chunks);
  await removeChunksFrom(out, runLayout.auditMatchedPrefix(opts.runId), chunks);
  return { runId: opts.runId, images: sample.length, chunks };
}

/** Step 2: matches one chunk's images, unless its stored matches are of this very chunk. */
export async function auditChunk(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunAuditOptions,
  chunk: number,
): Promise<{ chunk: number; images: number; reused: boolean }> {
  const { input, images } = await readSampleChunk(out, opts.runId, chunk);
  const done = await readMatchedChunk(out, opts.runId, chunk);
  if (done?.input === input) return { chunk, images: done.images.length, reused: true };
  const limit = pLimit(CONCURRENT_IMAGES);
  let imagesDone = 0;
  const audited = await Promise.all(
    images.map(({ line, reference }) =>
      limit(async () => {
        const result = await auditImage(out, stores, reference, line);
        imagesDone += 1;
        opts.onProgress?.({ phase: 'matching', done: imagesDone, total: images.length });
        return result;
      }),
    ),
  );
  const matched: MatchedChunk = { input, images: audited };
  await out.put(runLayout.auditMatchedChunk(opts.runId, chunk), JSON.stringify(matched), {
    contentType: 'application/json',
  });
  return { chunk, images: audited.length, reused: false };
}

/** Step 3: figures, gate, gallery and report from the stored sample and matches. */
export async function finishAudit(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunAuditOptions,
): Promise<AuditSummary> {
  const source = requireReference(out, opts);
  const stored = await readStoredSample(out, opts.runId);
  const audited: AuditedImage[] = [];
  // The sampled images with their reference entries, by id: the gallery draws a few of them.
  const sampled = new Map<number, SampleChunk['images'][number]>();
  for (let chunk = 0; chunk < stored.chunks; chunk++) {
    const { input, images } = await readSampleChunk(out, opts.runId, chunk);
    const matched = await readMatchedChunk(out, opts.runId, chunk);
    if (matched?.input !== input) {
      throw new AuditSampleError(
        `chunk ${chunk} of run ${opts.runId}'s audit sample has not been matched ` +
          `(${out.uri(runLayout.auditMatchedChunk(opts.runId, chunk))}): run auditChunk first; ` +
          'or another audit of this run is writing its own sample',
      );
    }
    audited.push(...matched.images);
    for (const image of images) sampled.set(image.line.id, image);
  }

  const exhaustive = opts.exhaustive ?? readExhaustiveFlag(source);
  const figures = computeFigures(
    audited.flatMap((a) => a.humans),
    audited.flatMap((a) => a.autos),
    exhaustive,
  );
  const gate = evaluateGate(figures.overall, opts.audit.gate);
  const rows = audited.map((a) => a.row);
  const worst = worstFirst(rows);

  const galleryRows = worst.slice(0, opts.galleryImages ?? DEFAULT_GALLERY_IMAGES);
  const gallery = await writeGallery(out, stores, opts, galleryRows, sampled);

  opts.onProgress?.({ phase: 'writing', done: audited.length, total: audited.length });
  const runStats = await readRunStats(out, opts.runId);
  const { drawn } = stored;
  const report: AuditReport = {
    run: opts.runId,
    reference: {
      uri: stored.reference.uri,
      format: stored.reference.format,
      ignoreValue: stored.reference.ignoreValue,
      exhaustive,
      images: stored.reference.images,
      unmatchedImages: stored.reference.unmatchedImages,
    },
    runImages: {
      segmented: drawn.segmented,
      failed: drawn.failed,
      unfinishedShards: drawn.unfinishedShards,
      withoutReference: drawn.segmented - drawn.candidates,
    },
    sample: {
      requested: opts.audit.sampleSize,
      seed: opts.audit.seed,
      candidates: drawn.candidates,
      audited: audited.length,
    },
    masks: {
      human: figures.overall.humanMasks,
      automatic: figures.precision.automaticMasks,
      skippedCrowd: sum(audited.map((a) => a.skippedCrowd)),
      skippedEmpty: sum(audited.map((a) => a.skippedEmpty)),
    },
    figures,
    paper: { ...PAPER_FIGURES },
    masksPerImage: {
      human: countSummary(rows.map((r) => r.humanMasks)),
      automatic: countSummary(rows.map((r) => r.automaticMasks)),
      run: runStats.masksPerImage,
    },
    gate: {
      ...gate,
      thresholds: { ...opts.audit.gate },
      configured: Object.values(opts.audit.gate).some((v) => v !== null),
    },
    worst: worst.slice(0, WORST_ROWS_IN_REPORT),
    gallery: gallery.entries,
    heatmap: runStats.heatmap,
    notes: [...runStats.notes, ...sampleNotes(drawn)],
    keys: {
      json: runLayout.auditReportJson(opts.runId),
      html: runLayout.auditReportHtml(opts.runId),
      rows: runLayout.auditRows(opts.runId),
    },
  };
  await writeReport(out, report, rows, gallery);
  return summarise(report);
}

async function readStoredSample(out: ObjectStore, runId: string): Promise<StoredSample> {
  const key = runLayout.auditSample(runId);
  const bytes = await out.get(key).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError)
      throw new Error(
        `run ${runId}'s audit sample ${out.uri(key)} does not exist: run drawAuditSample first`,
        { cause: err },
      );
    throw err;
  });
  return JSON.parse(bytes.toString('utf8')) as StoredSample;
}

async function readSampleChunk(
  out: ObjectStore,
  runId: string,
  chunk: number,
): Promise<{ input: string; images: SampleChunk['images'] }> {
  const bytes = await out.get(runLayout.auditSampleChunk(runId, chunk));
  const input = createHash('sha256').update(bytes).digest('hex');
  return { input, images: (JSON.parse(bytes.toString('utf8')) as SampleChunk).images };
}

async function readMatchedChunk(
  out: ObjectStore,
  runId: string,
  chunk: number,
): Promise<MatchedChunk | undefined> {
  const bytes = await out.get(runLayout.auditMatchedChunk(runId, chunk)).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  });
  return bytes && (JSON.parse(bytes.toString('utf8')) as MatchedChunk);
}

function requireReference(out: ObjectStore, opts: RunAuditOptions): MaskSourceConfig {
  if (opts.audit.reference) return opts.audit.reference;
  throw new AuditInputError(
    out.uri(runLayout.runRecord(opts.runId)),
    'audit.reference is not set: no human masks to compare with',
  );
}

/** rows.jsonl and report.json first, report.html last: once the page exists, everything does. */
async function writeReport(
  out: ObjectStore,
  report: AuditReport,
  rows: readonly AuditRow[],
  gallery: Gallery,
): Promise<void> {
  const jsonLines = rows.map((r) => JSON.stringify(r) + '\n').join('');
  await out.put(report.keys.rows, jsonLines, { contentType: 'application/x-ndjson' });
  await out.put(report.keys.json, JSON.stringify(report, null, 2) + '\n', {
    contentType: 'application/json',
  });
  const html = renderReportHtml(report, gallery.jpegs);
  await out.put(report.keys.html, html, { contentType: 'text/html; charset=utf-8' });
  await removeStaleGalleryImages(out, report.run, new Set(gallery.entries.map((g) => g.key)));
}

function summarise(report: AuditReport): AuditSummary {
  const { overall } = report.figures;
  return {
    runId: report.run,
    reportJsonKey: report.keys.json,
    reportHtmlKey: report.keys.html,
    rowsKey: report.keys.rows,
    imagesAudited: report.sample.audited,
    humanMasks: report.masks.human,
    automaticMasks: report.masks.automatic,
    shareAbove090: overall.shareAbove090,
    shareAbove075: overall.shareAbove075,
    meanIou: overall.meanIou,
    referenceImagesUnmatched: report.reference.unmatchedImages,
    runImagesWithoutReference: report.runImages.withoutReference,
    gate: { passed: report.gate.passed, failures: report.gate.failures },
  };
}

/** No segmented image has human masks in the reference: an error, not an empty report. */
function requireCandidates(drawn: AuditSample, reference: ReferenceSet): void {
  if (drawn.candidates > 0) return;
  const examples = (names: string[]) => names.map((n) => `"${n}"`).join(', ');
  const runNames = drawn.examples.map(uriFileName);
  throw new AuditInputError(
    reference.uri,
    `none of the reference's ${reference.imageCount} images (e.g. ${examples(reference.examples(3)) || 'none'}) ` +
      `matches one of the run's ${drawn.segmented} segmented images (e.g. ${examples(runNames) || 'none'}); ` +
      (reference.format === 'coco'
        ? 'COCO images are matched by the file name in file_name'
        : 'mask files are matched by the image file name without its extension'),
  );
}

function readExhaustiveFlag(source: MaskSourceConfig): boolean {
  return (source as MaskSourceConfig & { exhaustive?: unknown }).exhaustive === true;
}

function sampleNotes(drawn: StoredSample['drawn']): string[] {
  const notes: string[] = [];
  if (drawn.unfinishedShards > 0) {
    notes.push(
      `${drawn.unfinishedShards} stage-3 shard(s) have no results yet; their images were not considered.`,
    );
  }
  const without = drawn.segmented - drawn.candidates;
  if (without > 0)
    notes.push(`${without} segmented image(s) have no human masks in the reference and were not audited.`);
  return notes;
}

// ---------------------------------------------------------------------------------------------
// One image
// ---------------------------------------------------------------------------------------------

interface AuditedImage {
  row: AuditRow;
  humans: HumanRecord[];
  autos: AutoRecord[];
  skippedCrowd: number;
  skippedEmpty: number;
}

async function auditImage(
  out: ObjectStore,
  stores: StoreCache,
  reference: ReferenceEntry,
  line: DoneLine,
): Promise<AuditedImage> {
  const [human, autos] = await Promise.all([
    loadHumanMasks(stores, reference, line),
    readAutomaticMasks(out, line),
  ]);
  const match = matchImage(
    human.masks.map((m) => m.rle),
    autos,
    human.ignore,
  );
  const humans = human.masks.map((m, h) => ({
    bestIou: match.best[h]!.iou,
    pairIou: match.humanPairIou[h]!,
    area: m.area,
  }));
  const autoRecords = autos.map((rle, a) => ({ pairIou: match.autoPairIou[a]!, area: rleArea(rle) }));
  return {
    row: imageRow(line, human, autos.length, match.best, match.pairs.filter((p) => p.iou >= 0.5).length),
    humans,
    autos: autoRecords,
    skippedCrowd: human.skippedCrowd,
    skippedEmpty: human.skippedEmpty,
  };
}

function imageRow(
  line: DoneLine,
  human: HumanMasks,
  automaticMasks: number,
  best: ReturnType<typeof matchImage>['best'],
  matchedAt050: number,
): AuditRow {
  const worstIndex = best.reduce<number | null>(
    (w, b, i) => (w === null || b.iou < best[w]!.iou ? i : w),
    null,
  );
  const worst = worstIndex === null ? null : best[worstIndex]!;
  return {
    imageId: line.id,
    image: line.key,
    reference: human.file,
    width: line.w,
    height: line.h,
    humanMasks: human.masks.length,
    automaticMasks,
    meanBestIou: mean(best.map((b) => b.iou)),
    worstIou: worst?.iou ?? null,
    worstHumanMask: worstIndex === null ? null : human.masks[worstIndex]!.label,
    worstHumanIndex: worstIndex,
    worstAutoIndex: worst?.auto ?? null,
    matchedAt050,
    ignoredPixels: human.ignore ? rleArea(human.ignore) : 0,
  };
}

/** Images with human masks, lowest mean best IoU first (then lowest worst IoU, then id). */
function worstFirst(rows: readonly AuditRow[]): AuditRow[] {
  return rows
    .filter((r) => r.meanBestIou !== null)
    .sort((a, b) => a.meanBestIou! - b.meanBestIou! || a.worstIou! - b.worstIou! || a.imageId - b.imageId);
}

// ---------------------------------------------------------------------------------------------
// Gallery
// ---------------------------------------------------------------------------------------------

interface Gallery {
  entries: GalleryEntry[];
  /** The JPEGs by key, for embedding in report.html. */
  jpegs: Map<string, Buffer>;
}

/** Renders the worst images' worst pair (human mask and its best automatic mask), one by one. */
async function writeGallery(
  out: ObjectStore,
  stores: StoreCache,
  opts: RunAuditOptions,
  rows: readonly AuditRow[],
  sampled: ReadonlyMap<number, SampleChunk['images'][number]>,
): Promise<Gallery> {
  const gallery: Gallery = { entries: [], jpegs: new Map() };
  for (const [rank, row] of rows.entries()) {
    opts.onProgress?.({ phase: 'gallery', done: rank, total: rows.length });
    const image = sampled.get(row.imageId)!;
    const jpeg = await renderWorstPair(out, stores, image.reference, image.line, row);
    const key = runLayout.auditGalleryImage(opts.runId, rank);
    await out.put(key, jpeg, { contentType: 'image/jpeg' });
    gallery.jpegs.set(key, jpeg);
    gallery.entries.push({
      rank,
      key,
      imageId: row.imageId,
      image: row.image,
      humanMask: row.worstHumanMask,
      autoIndex: row.worstAutoIndex,
      iou: row.worstIou,
      meanBestIou: row.meanBestIou,
    });
  }
  return gallery;
}

/** Reads the photo and both masks again (only a handful of images need it) and draws them. */
async function renderWorstPair(
  out: ObjectStore,
  stores: StoreCache,
  reference: ReferenceEntry,
  line: DoneLine,
  row: AuditRow,
): Promise<Buffer> {
  const { store, key } = stores.locate(line.key);
  const [photo, human, autos] = await Promise.all([
    store.get(key),
    loadHumanMasks(stores, reference, line),
    readAutomaticMasks(out, line),
  ]);
  return renderOverlay(photo, line.key, {
    human: row.worstHumanIndex === null ? null : human.masks[row.worstHumanIndex]!.rle,
    auto: row.worstAutoIndex === null ? null : autos[row.worstAutoIndex]!,
    ignore: human.ignore,
  });
}

/** A smaller sample than last time must not leave the old sample's extra chunks behind. */
async function removeChunksFrom(out: ObjectStore, prefix: string, chunks: number): Promise<void> {
  const stale: string[] = [];
  for await (const key of out.listKeys(prefix)) {
    const chunk = Number(key.slice(prefix.length).replace(/\.json$/, ''));
    if (!(Number.isInteger(chunk) && chunk < chunks)) stale.push(key);
  }
  for (const key of stale) await out.delete(key);
}

/** A rerun with a smaller gallery must not leave the old run's extra pictures behind. */
async function removeStaleGalleryImages(out: ObjectStore, runId: string, keep: Set<string>): Promise<void> {
  const stale: string[] = [];
  for await (const key of out.listKeys(runLayout.auditGalleryPrefix(runId)))
    if (!keep.has(key)) stale.push(key);
  for (const key of stale) await out.delete(key);
}

function sum(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0);
}
