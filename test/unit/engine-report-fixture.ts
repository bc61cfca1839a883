// A run's stored files for the engine report's tests, made with the engine's own writers where
// they exist: stage 3 from the audit fixture, the dataset by buildDataset, the audit by runAudit,
// round summaries and COCO exports by summarizeRound and roundCoco, registry versions through
// ModelRegistry. `complete: false` gives a run still in its first rounds (no stage 3, no models).
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runAudit } from '../../lib/audit/audit.ts';
import { buildDataset } from '../../lib/dataset/build.ts';
import { ModelRegistry, registryUri, type Lineage } from '../../lib/models/registry.ts';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';
import { RunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { RunStatus } from '../../lib/run-record.ts';
import type { AnnotationRecord } from '../../lib/stage1/annotations.ts';
import { roundCoco, summarizeRound } from '../../lib/stage1/round-export.ts';
import {
  buildAuditFixture,
  humanRect,
  rectMask,
  type AuditFixture,
  type FixtureImage,
} from './audit-fixture.ts';

export interface EngineFixture extends AuditFixture {
  config: RunConfig;
  registry: ModelRegistry;
  images: FixtureImage[];
}

export interface EngineFixtureOptions {
  runId?: string;
  /** Stage 3, dataset, audit, stage-2 round and registry versions: a finished run. */
  complete: boolean;
}

/** Eight 240×180 photos with three rectangles each; stage 3's masks are the rectangles, shifted a little. */
export function fixtureImages(): FixtureImage[] {
  return Array.from({ length: 8 }, (_, i) => ({
    name: `photo-${i}.jpg`,
    w: 240,
    h: 180,
    objects: [
      { rect: { x: 20, y: 20, w: 90, h: 70 }, auto: { kind: 'shift' as const, dx: i } },
      { rect: { x: 130, y: 90, w: 80, h: 60 }, auto: { kind: 'dilate' as const, k: i % 3 } },
      { rect: { x: 170, y: 20, w: 30, h: 30 }, auto: { kind: 'same' as const } },
    ],
  }));
}

export async function buildEngineFixture(options: EngineFixtureOptions): Promise<EngineFixture> {
  const runId = options.runId ?? (options.complete ? 'engine-run' : 'engine-partial');
  const images = fixtureImages();
  const base = await buildAuditFixture(images, { runId, shardSize: 3 });
  const config = runConfig(base, options.complete);
  const registry = new ModelRegistry(openObjectStore(registryUri(config)));
  const fixture: EngineFixture = { ...base, config, registry, images };
  if (options.complete) {
    await buildDataset(base.out, base.stores, { runId });
    await runAudit(base.out, base.stores, { runId, audit: base.pngAudit });
    await writeRegistry(fixture);
  } else {
    // Only what a run in its second round has: stage 1 plans its image ids, no masks yet.
    await removeStage3(base.out, runId);
  }
  await writeRounds(fixture, options.complete);
  await writeRunRecord(fixture, options.complete ? 'completed' : 'running', options.complete);
  return fixture;
}

function runConfig(base: AuditFixture, complete: boolean): RunConfig {
  return RunConfigSchema.parse({
    run: base.runId,
    images: { prefix: pathToFileURL(base.imagesDir).href + '/' },
    output: base.out.rootUri,
    models: { sam: 'file:///models/sae-ref/' },
    stage1: { enabled: true, rounds: 2, imagesPerRound: 3, retrain: { enabled: true, minNewMasks: 1 } },
    stage2: { enabled: complete, rounds: 1, imagesPerRound: 2 },
    stage3: { enabled: true },
    audit: { enabled: true, reference: base.pngAudit.reference },
  });
}

/** What the audit fixture wrote for stage 3 is gone: the run has not got there yet. */
async function removeStage3(out: ObjectStore, runId: string): Promise<void> {
  for (const prefix of [runLayout.masksPrefix(runId), `runs/${runId}/stage3/`]) {
    const keys: string[] = [];
    for await (const key of out.listKeys(prefix)) keys.push(key);
    for (const key of keys) await out.delete(key);
  }
}

/**
 * Rounds 1 and 2 are stage 1 (images 0-2, 3-5), round 3 stage 2 (images 6-7, one mask pre-filled
 * each). People get faster as the model improves: 30, 20, 12 s per mask. The partial run has closed
 * round 1 only; round 2 has one accepted mask and no summary.
 */
async function writeRounds(f: EngineFixture, complete: boolean): Promise<void> {
  const plan = complete
    ? [
        { round: 1, ids: [0, 1, 2], seconds: 30, model: 'sam@v1', stage: undefined },
        { round: 2, ids: [3, 4, 5], seconds: 20, model: 'sam@v2', stage: 'stage1' as const },
        { round: 3, ids: [6, 7], seconds: 12, model: 'sam@v2', stage: 'stage2' as const },
      ]
    : [{ round: 1, ids: [0, 1, 2], seconds: 30, model: 'sae-ref@4', stage: undefined }];
  for (const { round, ids, seconds, model, stage } of plan) {
    const records = ids.flatMap((id) => roundRecords(f, round, id, seconds, model, stage === 'stage2'));
    const summary = summarizeRound(f.runId, round, records, 0, stage === 'stage2' ? 1 : 0);
    // Summaries written before rounds said their stage have no `stage`: round 1 stands for them.
    const stored = stage ? { ...summary, stage } : { ...summary, stage: undefined };
    await f.out.put(runLayout.stage1RoundSummary(f.runId, round), JSON.stringify(stored, null, 2));
    await writeExport(f, round, records);
  }
  if (!complete) {
    const [open] = roundRecords(f, 2, 3, 20, 'sae-ref@4', false);
    await f.out.put(runLayout.stage1Annotation(f.runId, 2, 3, open!.submissionId), JSON.stringify(open));
  }
}

/** Each object of the image as a person's mask; in stage 2 the first one was pre-filled. */
function roundRecords(
  f: EngineFixture,
  round: number,
  imageId: number,
  seconds: number,
  model: string,
  prefill: boolean,
): AnnotationRecord[] {
  const image = f.images[imageId]!;
  return image.objects.map((object, i) => {
    const rect = humanRect(image, object);
    const prefilled = prefill && i === 0;
    return {
      run: f.runId,
      round,
      imageId,
      image: pathToFileURL(path.join(f.imagesDir, image.name)).href,
      annotator: prefilled ? 'detector:detector@v2' : `person-${i % 2}`,
      submissionId: `s${round}-${imageId}-${i}`,
      mask: compressRle(encodeMask(rectMask(rect, image.w, image.h), image.h, image.w)),
      seconds: prefilled ? 0 : seconds,
      clicks: prefilled ? 0 : 3,
      model,
      acceptedAt: '2026-12-07T10:00:00.000Z',
      prefilled,
    };
  });
}

async function writeExport(f: EngineFixture, round: number, records: AnnotationRecord[]): Promise<void> {
  const coco = roundCoco(f.runId, round, records);
  const cocoKey = runLayout.stage1RoundCoco(f.runId, round);
  await f.out.put(cocoKey, JSON.stringify(coco));
  const imagesDir = path.join(f.root, 'out', path.dirname(cocoKey), 'images');
  await mkdir(imagesDir, { recursive: true });
  for (const image of coco.images) {
    await copyFile(path.join(f.imagesDir, f.images[image.id]!.name), path.join(imagesDir, image.file_name));
  }
}

async function writeRunRecord(f: EngineFixture, status: RunStatus, complete: boolean): Promise<void> {
  const result = complete
    ? {
        stage2: {
          rounds: [{ round: 3, prefill: { images: 2, masks: 2, detector: 'detector@v2' } }],
        },
      }
    : undefined;
  const record = {
    run: f.runId,
    status,
    updatedAt: '2026-12-07T12:00:00.000Z',
    identity: { fingerprint: 'fixture', inputs: {} },
    config: f.config,
    ...(result ? { result } : {}),
  };
  await f.out.put(runLayout.runRecord(f.runId), JSON.stringify(record, null, 2));
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

export const HOLDOUT = 'runs/engine-run/stage1/training/set-1/holdout.json';

export function samFigures(miou: number, noc90: number) {
  return {
    images: 3,
    masks: 9,
    miou_1click: miou,
    noc85: noc90 - 1,
    noc90,
    max_clicks: 20,
    miou_at_clicks: { '1': miou, '3': miou + 0.1 },
    iou_head: {
      pairs: 27,
      pearson: 0.41,
      mean_abs_error: 0.12,
      bins: [{ from: 0.2, to: 0.3, count: 27, predicted: 0.25, true: 0.3 }],
    },
  };
}

function detectorFigures(ap: number) {
  return {
    images: 2,
    boxes: 6,
    detections: 9,
    AP: ap,
    AP50: ap * 2,
    AP75: ap / 2,
    AP_small: 0,
    AP_medium: ap,
    AP_large: ap,
    AR1: ap,
    AR10: ap,
    AR100: ap * 1.5,
    settings: { score_threshold: 0.1, nms_iou: 0.5, max_detections: 100 },
    protocol: 'pycocotools COCOeval, iouType bbox, useCats 0',
  };
}

/**
 * sam v1 is the champion from before the run; the run retrains v2 (promoted, metrics keyed by
 * held-out set) and v3 (refused, flat metrics); another run's v4 is not this run's. The detector:
 * the run's seed v1 and its retrain v2, promoted.
 */
async function writeRegistry(f: EngineFixture): Promise<void> {
  const r = f.registry;
  const run = f.runId;
  await version(r, 'sam', { trigger: 'added by hand' });
  await r.moveAlias('sam', 'champion', 1, { reason: 'added by hand' });
  await version(r, 'sam', {
    idempotencyKey: `${run}/retrain-1`,
    parent: { name: 'sam', version: 1 },
    trigger: 'stage1 round 1: 9 masks',
    metrics: { [HOLDOUT]: samFigures(0.62, 6.5) },
    gate: {
      promoted: true,
      reason: 'promoted: 1-click mIoU 0.550 → 0.620',
      champion: { name: 'sam', version: 1 },
      championMetrics: samFigures(0.55, 7.5),
    },
  });
  await r.moveAlias('sam', 'champion', 2, { reason: 'promoted', expected: 1 });
  // v2 was calibrated when it was promoted (its held-out images gave no basis to choose, so it
  // kept its parent's pair, as calibrateOnHoldout does); v1 has no model.json here, v3's is damaged.
  await r.store.put(
    'sam/v2/model.json',
    JSON.stringify({
      format: 'sa-engine-model/1',
      amg_calibration: {
        pred_iou_thresh: 0.3,
        stability_score_thresh: 0.5,
        points_per_side: 16,
        measured_on: '1 held-out image',
        rule: 'highest F1',
        inherited_from: 'sam v1',
      },
    }),
  );
  await version(r, 'sam', {
    idempotencyKey: `${run}/retrain-2`,
    parent: { name: 'sam', version: 2 },
    trigger: 'stage1 round 2: 9 masks',
    metrics: samFigures(0.6, 6.8),
    gate: {
      promoted: false,
      reason: 'not promoted: 1-click mIoU 0.620 → 0.600',
      champion: { name: 'sam', version: 2 },
      championMetrics: samFigures(0.62, 6.5),
    },
  });
  await r.store.put('sam/v3/model.json', '{"format": ');
  await version(r, 'sam', { idempotencyKey: 'other-run/retrain-1', trigger: 'another run' });
  await version(r, 'detector', { idempotencyKey: `${run}/seed`, trigger: `seeded by run ${run}` });
  await r.moveAlias('detector', 'champion', 1, { reason: 'seeded' });
  await version(r, 'detector', {
    idempotencyKey: `${run}/detector-retrain-1`,
    parent: { name: 'detector', version: 1 },
    trigger: 'stage 2 before its first round',
    metrics: { 'runs/engine-run/stage1/training/detector-set-1/manifest.json': detectorFigures(0.2) },
    gate: {
      promoted: true,
      reason: 'promoted: box AP 0.100 → 0.200',
      champion: { name: 'detector', version: 1 },
      championMetrics: detectorFigures(0.1),
    },
  });
  await r.moveAlias('detector', 'champion', 2, { reason: 'promoted', expected: 1 });
}

type VersionOptions = Partial<Pick<Lineage, 'parent' | 'metrics' | 'gate'>> & {
  trigger: string;
  idempotencyKey?: string;
};

/** A complete version without package files: the report reads lineages only. */
export async function version(registry: ModelRegistry, name: string, opts: VersionOptions): Promise<Lineage> {
  const { version: v } = await registry.claim(name, opts.idempotencyKey);
  return registry.complete(name, v, { ...opts, source: { name, version: 'fixture' }, files: [] });
}
