// What the engine report (runs/<run>/report/index.html) shows, read only from what the run stored:
// its record (run.json), the rounds' summaries and COCO exports, the model registry, the dataset's
// statistics and manifest, the SA-1B mask files and the audit's report.json. A running run is the
// normal case, so anything not written yet is null or empty here and the page says so; a stored
// file that is there but malformed is an EngineReportError naming the file and the field.
import { createInterface } from 'node:readline';
import { z } from 'zod';
import type { IouFigures } from '../audit/figures.ts';
import type { DatasetStats } from '../dataset/statistics.ts';
import { ModelRegistry, registryUri, type Lineage } from '../models/registry.ts';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import { StoreCache } from '../object-store/uri.ts';
import type { CocoRle } from '../rle.ts';
import { RunConfigSchema, type RunConfig } from '../run-config.ts';
import { runLayout } from '../run-layout.ts';
import { amgThresholdsOf } from '../sam/model-package.ts';
import type { RunStatus } from '../run-record.ts';
import type { RoundSummary } from '../stage1/round-export.ts';
import { EvaluateDetectorResultSchema, EvaluateSamResultSchema } from '../training/contract.ts';

export const DEFAULT_GALLERY_IMAGES = 6;

export interface EngineReportOptions {
  /** Sampled images in the gallery (default 6). */
  galleryImages?: number;
  /** Opens the registry and the photos; one is made (and closed) when left out. */
  stores?: StoreCache;
  /** The registry to read; default: the one `registryUri(config)` names. */
  registry?: ModelRegistry;
}

export class EngineReportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineReportError';
  }
}

export type StageName = 'stage1' | 'stage2' | 'stage3' | 'audit' | 'release';
export type RoundStage = 'stage1' | 'stage2';

export interface StageState {
  stage: StageName;
  enabled: boolean;
  /** What the stage has stored so far, in words; null when nothing yet. */
  output: string | null;
}

export interface RoundRow {
  round: number;
  stage: RoundStage;
  key: string;
  imagesAnnotated: number;
  masks: number;
  masksPerImage: number | null;
  prefilledKept: number;
  prefilledDeleted: number;
  added: number;
  secondsMedian: number | null;
  secondsP90: number | null;
  clicksPerMask: number | null;
  /** The assisting models with their masks, "sam@v2" → 120. */
  models: Record<string, number>;
  /** Stage 2: the detector that pre-filled, and why the pre-fill did not happen if it did not. */
  detector: string | null;
  prefillProblem: string | null;
}

export interface RoundsData {
  /** Rounds the config asks for (stage 1's plus stage 2's). */
  planned: number;
  rows: RoundRow[];
  /** Rounds with stored annotations but no summary yet: still open. */
  open: number[];
}

export interface SamFigures {
  dataset: string | null;
  images: number;
  masks: number;
  miou1click: number | null;
  noc85: number | null;
  noc90: number | null;
  /** mIoU after k clicks, by k. */
  miouAtClicks: Record<string, number>;
  /** How well the IoU head's predictions track true IoU (Pearson r), when measured and defined. */
  iouHeadPearson: number | null;
}

export interface DetectorFigures {
  dataset: string | null;
  images: number;
  boxes: number;
  ap: number;
  ap50: number;
  ar100: number;
}

export type VersionRole = 'seed' | 'retrain' | 'before the run';

export interface ModelVersionRow<F> {
  name: string;
  version: number;
  role: VersionRole;
  createdAt: string;
  trigger: string;
  parent: string | null;
  /** Held-out figures of the version itself; null when none were measured (a seed). */
  figures: F | null;
  gate: { promoted: boolean; reason: string; champion: string | null; championFigures: F | null } | null;
  /** The registry's champion now. */
  champion: boolean;
  /** SAM versions: the AMG thresholds in their model.json (stage 3's with `thresholds: model`). */
  amgThresholds?: { predIouThresh: number; stabilityScoreThresh: number; inheritedFrom?: string } | null;
}

export interface ModelsData<F> {
  name: string;
  registry: string;
  versions: ModelVersionRow<F>[];
}

export interface MasksByStage {
  stage1Annotated: number | null;
  stage2PrefilledKept: number | null;
  stage2Added: number | null;
  stage3Automatic: number | null;
}

export interface AuditData {
  key: string;
  /** The audit's own page, when written (relative link ../audit/report.html). */
  htmlKey: string | null;
  overall: IouFigures;
  audited: number;
  humanMasks: number;
  automaticMasks: number;
  reference: string;
  gate: { configured: boolean; passed: boolean; failures: string[] };
}

export interface GalleryImage {
  /** Names the picture in the map of JPEGs the page is rendered with. */
  key: string;
  imageId: number;
  /** Where the masks come from: "stage 3" or "round 2". */
  from: string;
  /** The photo: a key in the run's store, or the URI of the original. */
  photo: { key: string } | { uri: string };
  name: string;
  masks: CocoRle[];
}

export interface GalleryData {
  source: 'stage3' | 'rounds' | 'none';
  images: GalleryImage[];
}

export interface EngineReportData {
  run: string;
  record: { key: string; status: RunStatus; updatedAt: string; ended: boolean };
  config: RunConfig;
  stages: StageState[];
  rounds: RoundsData;
  models: { sam: ModelsData<SamFigures>; detector: ModelsData<DetectorFigures> };
  masksByStage: MasksByStage;
  audit: AuditData | null;
  dataset: (DatasetStats & { key: string }) | null;
  gallery: GalleryData;
}

/** Everything the report shows, from what `runId` stored in `out` and in its registry. */
export async function readEngineReportData(
  out: ObjectStore,
  runId: string,
  options: EngineReportOptions = {},
): Promise<EngineReportData> {
  const stores = options.stores ?? new StoreCache();
  try {
    const { record, config, result } = await readRecord(out, runId);
    const rounds = await readRounds(out, runId, config, result);
    const registry = options.registry ?? new ModelRegistry(stores.open(registryUri(config)));
    const models = await readModels(registry, runId, config, rounds.rows);
    const dataset = await readDatasetStats(out, runId);
    const audit = await readAudit(out, runId);
    const gallery = await readGallery(out, runId, dataset, rounds.rows, options.galleryImages);
    return {
      run: runId,
      record,
      config,
      stages: await stageStates(out, runId, config, rounds, dataset, audit),
      rounds,
      models,
      masksByStage: masksByStage(rounds.rows, dataset),
      audit,
      dataset,
      gallery,
    };
  } finally {
    if (!options.stores) await stores.close();
  }
}

// ---------------------------------------------------------------------------------------------
// run.json
// ---------------------------------------------------------------------------------------------

const runRecordSchema = z.object({
  run: z.string(),
  status: z.enum(['running', 'completed', 'failed', 'cancelled']),
  updatedAt: z.string(),
  config: z.unknown(),
  result: z.unknown().optional(),
});

/**
 * The recorded config, each field checked and defaulted as a run config is; without the rules
 * across sections (they decide whether a run may start, not whether its record can be read) and
 * ignoring keys a newer engine added.
 */
const recordedConfigSchema = z.object(RunConfigSchema.shape);

/** Only what the report takes from the result: which detector pre-filled each stage-2 round. */
const runResultSchema = z
  .object({
    stage2: z
      .object({
        rounds: z
          .array(
            z.object({
              round: z.number().int().positive(),
              prefill: z.object({ detector: z.string().nullish(), problem: z.string().nullish() }).nullish(),
            }),
          )
          .optional(),
      })
      .nullish(),
  })
  .nullish();
type RunResult = z.infer<typeof runResultSchema>;

async function readRecord(
  out: ObjectStore,
  runId: string,
): Promise<{ record: EngineReportData['record']; config: RunConfig; result: RunResult }> {
  const key = runLayout.runRecord(runId);
  const bytes = await getIfExists(out, key);
  if (!bytes) throw new EngineReportError(`no run ${runId} under ${out.rootUri}: ${out.uri(key)} is missing`);
  const where = out.uri(key);
  const stored = parseJson(runRecordSchema, bytes, where);
  const config: RunConfig = check(recordedConfigSchema, stored.config, where, ['config']);
  const result = check(runResultSchema, stored.result, where, ['result']);
  return {
    record: { key, status: stored.status, updatedAt: stored.updatedAt, ended: stored.result !== undefined },
    config,
    result,
  };
}

// ---------------------------------------------------------------------------------------------
// Annotation rounds
// ---------------------------------------------------------------------------------------------

const nullableNumber = z.number().nullable();
const count = z.number().int().nonnegative();

/** A round's summary.json as stored; `added`, `prefilled` and `stage` came later than the rest. */
type StoredRoundSummary = Omit<RoundSummary, 'annotators' | 'imagesFlagged' | 'added' | 'prefilled'> &
  Partial<Pick<RoundSummary, 'added' | 'prefilled'>> & { stage?: RoundStage | undefined };

const roundSummarySchema: z.ZodType<StoredRoundSummary> = z.object({
  run: z.string(),
  round: z.number().int().positive(),
  stage: z.enum(['stage1', 'stage2']).optional(),
  masks: count,
  imagesAnnotated: count,
  masksPerImage: z.object({ mean: nullableNumber, median: nullableNumber }),
  secondsPerMask: z.object({ median: nullableNumber, p90: nullableNumber }),
  clicksPerMask: z.object({ mean: nullableNumber, median: nullableNumber }),
  added: z.object({ masks: count, perImage: nullableNumber }).optional(),
  prefilled: z.object({ masks: count, perImage: nullableNumber, rejected: count }).optional(),
  models: z.record(z.string(), z.number()),
});

/**
 * Every planned round's summary, in round order; a round with stored keys but no summary is one
 * still open. Two requests a round at most, however many masks it holds.
 */
async function readRounds(
  out: ObjectStore,
  runId: string,
  config: RunConfig,
  result: RunResult,
): Promise<RoundsData> {
  const planned =
    (config.stage1.enabled ? config.stage1.rounds : 0) + (config.stage2.enabled ? config.stage2.rounds : 0);
  const prefills = new Map((result?.stage2?.rounds ?? []).map((r) => [r.round, r.prefill ?? null]));
  const rows: RoundRow[] = [];
  const open: number[] = [];
  for (let round = 1; round <= planned; round++) {
    const key = runLayout.stage1RoundSummary(runId, round);
    const stored = await getIfExists(out, key);
    if (stored === undefined) {
      if (await anyKey(out, runLayout.stage1Round(runId, round))) open.push(round);
      continue;
    }
    const summary = parseJson(roundSummarySchema, stored, out.uri(key));
    const stage = summary.stage ?? (prefills.has(round) ? 'stage2' : roundStage(config, round));
    rows.push(roundRow(key, summary, stage, prefills.get(round) ?? null));
  }
  return { planned, rows, open };
}

/** Stage 1's rounds come first and stage 2's follow in one numbering (README "Stage 2"). */
function roundStage(config: RunConfig, round: number): RoundStage {
  if (!config.stage1.enabled) return 'stage2';
  return round <= config.stage1.rounds || !config.stage2.enabled ? 'stage1' : 'stage2';
}

function roundRow(
  key: string,
  s: StoredRoundSummary,
  stage: RoundStage,
  prefill: { detector?: string | null; problem?: string | null } | null,
): RoundRow {
  return {
    round: s.round,
    stage,
    key,
    imagesAnnotated: s.imagesAnnotated,
    masks: s.masks,
    masksPerImage: s.masksPerImage.mean,
    prefilledKept: s.prefilled?.masks ?? 0,
    prefilledDeleted: s.prefilled?.rejected ?? 0,
    added: s.added?.masks ?? s.masks,
    secondsMedian: s.secondsPerMask.median,
    secondsP90: s.secondsPerMask.p90,
    clicksPerMask: s.clicksPerMask.mean,
    models: s.models,
    detector: prefill?.detector ?? null,
    prefillProblem: prefill?.problem ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// Model registry
// ---------------------------------------------------------------------------------------------

async function readModels(
  registry: ModelRegistry,
  runId: string,
  config: RunConfig,
  rounds: readonly RoundRow[],
): Promise<EngineReportData['models']> {
  const named = rounds.flatMap((r) => [...Object.keys(r.models), ...(r.detector ? [r.detector] : [])]);
  const sam = await readModel(registry, runId, config.stage1.retrain.model, named, samFigures);
  for (const row of sam.versions) row.amgThresholds = await amgThresholds(registry, row);
  return {
    sam,
    detector: await readModel(registry, runId, config.stage2.detector.model, named, detectorFigures),
  };
}

/** A version's calibrated AMG thresholds; null when its model.json has none, is gone or is not JSON. */
async function amgThresholds<F>(
  registry: ModelRegistry,
  row: ModelVersionRow<F>,
): Promise<ModelVersionRow<F>['amgThresholds']> {
  try {
    const text = await registry.store.get(`${row.name}/v${row.version}/model.json`);
    return amgThresholdsOf(JSON.parse(text.toString('utf8')));
  } catch (err) {
    if (err instanceof ObjectNotFoundError || err instanceof SyntaxError) return null;
    throw err;
  }
}

type FiguresOf<F> = (metrics: Record<string, unknown> | null, where: string, path: string[]) => F | null;

/**
 * The versions the run created (their idempotency key starts with "<run>/"), and any other
 * version the run used ("sam@v1" in a round's models, a gate's champion): the champion it started from.
 */
async function readModel<F>(
  registry: ModelRegistry,
  runId: string,
  name: string,
  named: readonly string[],
  figures: FiguresOf<F>,
): Promise<ModelsData<F>> {
  const all = await registry.versions(name);
  const ours = all.filter((v) => v.idempotencyKey?.startsWith(`${runId}/`));
  const used = new Set(named.flatMap((ref) => versionOf(ref, name)));
  for (const v of ours) if (v.gate?.champion?.name === name) used.add(v.gate.champion.version);
  const champion = (await registry.aliases(name)).champion;
  const rows = all
    .filter((v) => ours.includes(v) || used.has(v.version))
    .map((v) => versionRow(registry, v, runId, champion, figures));
  return { name, registry: registry.store.rootUri, versions: rows };
}

/** "sam@v3" → [3] when it names `name`. */
function versionOf(ref: string, name: string): number[] {
  const match = /^(.+)@v(\d+)$/.exec(ref);
  return match && match[1] === name ? [Number(match[2])] : [];
}

function versionRow<F>(
  registry: ModelRegistry,
  v: Lineage,
  runId: string,
  champion: number | undefined,
  figures: FiguresOf<F>,
): ModelVersionRow<F> {
  const where = registry.store.uri(`${v.name}/v${v.version}/lineage.json`);
  const role: VersionRole = !v.idempotencyKey?.startsWith(`${runId}/`)
    ? 'before the run'
    : v.idempotencyKey === `${runId}/seed`
      ? 'seed'
      : 'retrain';
  return {
    name: v.name,
    version: v.version,
    role,
    createdAt: v.createdAt,
    trigger: v.trigger,
    parent: v.parent ? `${v.parent.name}@v${v.parent.version}` : null,
    figures: figures(v.metrics, where, ['metrics']),
    gate: v.gate && {
      promoted: v.gate.promoted,
      reason: v.gate.reason,
      champion: v.gate.champion ? `${v.gate.champion.name}@v${v.gate.champion.version}` : null,
      championFigures: figures(v.gate.championMetrics, where, ['gate', 'championMetrics']),
    },
    champion: champion === v.version,
  };
}

// The trainer's results, checked with the training contract's schemas. Loose: a figure the trainer
// adds later must not break the report of a run that has it.
const samResultSchema = EvaluateSamResultSchema.loose();
const detectorResultSchema = EvaluateDetectorResultSchema.loose();

function samFigures(
  metrics: Record<string, unknown> | null,
  where: string,
  path: string[],
): SamFigures | null {
  const picked = pickDataset(metrics, path);
  if (!picked) return null;
  const f = check(samResultSchema, picked.figures, where, picked.path);
  return {
    dataset: picked.dataset ?? f.dataset ?? null,
    images: f.images,
    masks: f.masks,
    miou1click: f.miou_1click ?? null,
    noc85: f.noc85 ?? null,
    noc90: f.noc90 ?? null,
    miouAtClicks: f.miou_at_clicks ?? {},
    iouHeadPearson: f.iou_head?.pearson ?? null,
  };
}

function detectorFigures(
  metrics: Record<string, unknown> | null,
  where: string,
  path: string[],
): DetectorFigures | null {
  const picked = pickDataset(metrics, path);
  if (!picked) return null;
  const f = check(detectorResultSchema, picked.figures, where, picked.path);
  return {
    dataset: picked.dataset ?? f.dataset ?? null,
    images: f.images,
    boxes: f.boxes,
    ap: f.AP,
    ap50: f.AP50,
    ar100: f.AR100,
  };
}

/**
 * Lineage metrics are either one evaluation's figures (flat: they have `images`) or a record of
 * held-out set → figures, as workflows/retrain.ts writes them; then the first set is the one.
 */
function pickDataset(
  metrics: Record<string, unknown> | null,
  path: string[],
): { dataset: string | null; figures: unknown; path: string[] } | null {
  if (!metrics) return null;
  if ('images' in metrics) return { dataset: null, figures: metrics, path };
  const first = Object.entries(metrics)[0];
  if (!first) return null;
  return { dataset: first[0], figures: first[1], path: [...path, first[0]] };
}

// ---------------------------------------------------------------------------------------------
// Dataset statistics and the audit
// ---------------------------------------------------------------------------------------------

const countBinSchema = z.object({ label: z.string(), min: z.number(), max: nullableNumber, count });
const sizeBinSchema = z.object({ label: z.string(), min: z.number(), max: z.number(), count });

/** lib/dataset/statistics.ts's DatasetStats, as finishDataset writes it. */
const datasetStatsSchema: z.ZodType<DatasetStats> = z.object({
  run: z.string(),
  images: count,
  imagesFailed: count,
  masks: count,
  emptyMasks: count,
  masksPerImage: z.object({
    mean: nullableNumber,
    median: nullableNumber,
    min: nullableNumber,
    max: nullableNumber,
    histogram: z.array(countBinSchema),
  }),
  maskSize: z.object({
    relativeSize: z.string(),
    meanRelativeSize: nullableNumber,
    histogram: z.array(sizeBinSchema),
    coco: z.object({
      small: count,
      medium: count,
      large: count,
      smallBelow: z.number(),
      mediumBelow: z.number(),
    }),
  }),
  centres: z.object({ grid: z.number().int().positive(), counts: z.array(z.array(z.number())) }),
  models: z.array(z.string()),
  processingMs: z.number(),
  release: z
    .object({
      shortestSide: z.number(),
      images: count,
      maskResolution: z.literal('original'),
      note: z.string(),
    })
    .nullable(),
});

async function readDatasetStats(out: ObjectStore, runId: string): Promise<EngineReportData['dataset']> {
  const key = runLayout.datasetStats(runId);
  const bytes = await getIfExists(out, key);
  return bytes ? { ...parseJson(datasetStatsSchema, bytes, out.uri(key)), key } : null;
}

const iouFiguresSchema: z.ZodType<IouFigures> = z.object({
  humanMasks: count,
  meanIou: nullableNumber,
  medianIou: nullableNumber,
  shareAbove090: nullableNumber,
  shareAbove075: nullableNumber,
  histogram: z.array(z.object({ from: z.number(), to: z.number(), count })),
  recall: z.object({ at050: nullableNumber, at075: nullableNumber, at090: nullableNumber }),
});

/** The part of lib/audit/report.ts's AuditReport the engine report shows. */
const auditReportSchema = z.object({
  reference: z.object({ uri: z.string() }),
  sample: z.object({ audited: count }),
  masks: z.object({ human: count, automatic: count }),
  figures: z.object({ overall: iouFiguresSchema }),
  gate: z.object({ configured: z.boolean(), passed: z.boolean(), failures: z.array(z.string()) }),
});

async function readAudit(out: ObjectStore, runId: string): Promise<AuditData | null> {
  const key = runLayout.auditReportJson(runId);
  const bytes = await getIfExists(out, key);
  if (!bytes) return null;
  const report = parseJson(auditReportSchema, bytes, out.uri(key));
  const htmlKey = runLayout.auditReportHtml(runId);
  return {
    key,
    htmlKey: (await out.exists(htmlKey)) ? htmlKey : null,
    overall: report.figures.overall,
    audited: report.sample.audited,
    humanMasks: report.masks.human,
    automaticMasks: report.masks.automatic,
    reference: report.reference.uri,
    gate: report.gate,
  };
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

async function stageStates(
  out: ObjectStore,
  runId: string,
  config: RunConfig,
  rounds: RoundsData,
  dataset: EngineReportData['dataset'],
  audit: AuditData | null,
): Promise<StageState[]> {
  const closed = (stage: RoundStage) => rounds.rows.filter((r) => r.stage === stage).length;
  const roundsOutput = (stage: RoundStage) =>
    closed(stage) === 0 ? null : `${closed(stage)} of ${config[stage].rounds} rounds closed`;
  const stage3Output = dataset
    ? `${dataset.images} images, ${dataset.masks} masks (dataset built)`
    : (await anyKey(out, runLayout.masksPrefix(runId)))
      ? 'masks being written; the dataset is not built yet'
      : null;
  return [
    { stage: 'stage1', enabled: config.stage1.enabled, output: roundsOutput('stage1') },
    { stage: 'stage2', enabled: config.stage2.enabled, output: roundsOutput('stage2') },
    { stage: 'stage3', enabled: config.stage3.enabled, output: stage3Output },
    { stage: 'audit', enabled: config.audit.enabled, output: audit && `${audit.audited} images audited` },
    {
      stage: 'release',
      enabled: config.release.enabled,
      output: dataset?.release ? `${dataset.release.images} release copies` : null,
    },
  ];
}

function masksByStage(rows: readonly RoundRow[], dataset: EngineReportData['dataset']): MasksByStage {
  const stage1 = rows.filter((r) => r.stage === 'stage1');
  const stage2 = rows.filter((r) => r.stage === 'stage2');
  const sum = (list: readonly RoundRow[], pick: (r: RoundRow) => number) =>
    list.length === 0 ? null : list.reduce((n, r) => n + pick(r), 0);
  return {
    stage1Annotated: sum(stage1, (r) => r.masks),
    stage2PrefilledKept: sum(stage2, (r) => r.prefilledKept),
    stage2Added: sum(stage2, (r) => r.added),
    stage3Automatic: dataset?.masks ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// Gallery
// ---------------------------------------------------------------------------------------------

const manifestLineSchema = z.object({
  id: z.number().int().nonnegative(),
  image: z.string(),
  masks: z.string(),
});
const sa1bMasksSchema = z.object({
  annotations: z.array(
    z.object({ segmentation: z.object({ size: z.tuple([z.number(), z.number()]), counts: z.string() }) }),
  ),
});

/** Stage 3's masks when the dataset is built; else the rounds' annotated images; else none. */
async function readGallery(
  out: ObjectStore,
  runId: string,
  dataset: EngineReportData['dataset'],
  rounds: readonly RoundRow[],
  wanted = DEFAULT_GALLERY_IMAGES,
): Promise<GalleryData> {
  if (wanted <= 0) return { source: 'none', images: [] };
  if (dataset && dataset.images > 0) {
    return { source: 'stage3', images: await stage3Gallery(out, runId, dataset.images, wanted) };
  }
  const images = await roundsGallery(out, runId, rounds, wanted);
  return { source: images.length > 0 ? 'rounds' : 'none', images };
}

/** `wanted` indices spread evenly over `total` (the middle of each equal slice): deterministic. */
export function evenlySpaced(total: number, wanted: number): number[] {
  const n = Math.min(total, wanted);
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * total) / n));
}

/** Reads the manifest once, up to the last sampled line (it has one line per segmented image). */
async function stage3Gallery(
  out: ObjectStore,
  runId: string,
  images: number,
  wanted: number,
): Promise<GalleryImage[]> {
  const key = runLayout.datasetManifest(runId);
  const picks = new Set(evenlySpaced(images, wanted));
  const last = Math.max(...picks);
  const gallery: GalleryImage[] = [];
  let index = 0;
  for await (const line of jsonLines(out, key)) {
    if (picks.has(index)) {
      const entry = check(manifestLineSchema, line, out.uri(key), [`line ${index + 1}`]);
      const masksFile = parseJson(sa1bMasksSchema, await out.get(entry.masks), out.uri(entry.masks));
      gallery.push({
        key: `stage3/${entry.id}`,
        imageId: entry.id,
        from: 'stage 3',
        photo: { uri: entry.image },
        name: entry.image.slice(entry.image.lastIndexOf('/') + 1),
        masks: masksFile.annotations.map((a) => a.segmentation),
      });
    }
    if (++index > last) break;
  }
  return gallery;
}

async function* jsonLines(out: ObjectStore, key: string): AsyncIterable<unknown> {
  const lines = createInterface({ input: await out.getStream(key), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    try {
      yield JSON.parse(line);
    } catch {
      throw new EngineReportError(`${out.uri(key)}: line ${n} is not JSON`);
    }
  }
}

const roundCocoSchema = z.object({
  images: z.array(z.object({ id: z.number().int(), file_name: z.string(), source: z.string().optional() })),
  annotations: z.array(
    z.object({
      image_id: z.number().int(),
      segmentation: z.object({ size: z.tuple([z.number(), z.number()]), counts: z.string() }),
    }),
  ),
});

/** Images people annotated, spread over the closed rounds' COCO exports. */
async function roundsGallery(
  out: ObjectStore,
  runId: string,
  rounds: readonly RoundRow[],
  wanted: number,
): Promise<GalleryImage[]> {
  const candidates: GalleryImage[] = [];
  for (const row of rounds) {
    const key = runLayout.stage1RoundCoco(runId, row.round);
    const bytes = await getIfExists(out, key);
    if (!bytes) continue;
    const coco = parseJson(roundCocoSchema, bytes, out.uri(key));
    const imagesPrefix = key.slice(0, key.lastIndexOf('/')) + '/images/';
    for (const image of coco.images) {
      candidates.push({
        key: `round-${row.round}/${image.id}`,
        imageId: image.id,
        from: `round ${row.round}`,
        photo: { key: imagesPrefix + image.file_name },
        name: image.source ? image.source.slice(image.source.lastIndexOf('/') + 1) : image.file_name,
        masks: coco.annotations.filter((a) => a.image_id === image.id).map((a) => a.segmentation),
      });
    }
  }
  return evenlySpaced(candidates.length, wanted).map((i) => candidates[i]!);
}

// ---------------------------------------------------------------------------------------------
// Reading and checking
// ---------------------------------------------------------------------------------------------

/** Whether anything is stored under the prefix (stage 1 writes a plan too, so masks tell stage 3 ran). */
async function anyKey(out: ObjectStore, prefix: string): Promise<boolean> {
  for await (const page of out.list(prefix, { pageSize: 1 })) if (page.length > 0) return true;
  return false;
}

async function getIfExists(out: ObjectStore, key: string): Promise<Buffer | undefined> {
  try {
    return await out.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

function parseJson<T>(schema: z.ZodType<T>, bytes: Buffer, where: string): T {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new EngineReportError(`${where} is not JSON: ${(err as Error).message}`);
  }
  return check(schema, json, where);
}

/** The value, or an error that names the file and each bad field ("secondsPerMask.median: ..."). */
function check<T>(schema: z.ZodType<T>, value: unknown, where: string, path: string[] = []): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const field = [...path, ...issue.path.map(String)].join('.');
    return `${field === '' ? '(the whole file)' : field}: ${issue.message}`;
  });
  throw new EngineReportError(`${where}: ${problems.join('; ')}`);
}
