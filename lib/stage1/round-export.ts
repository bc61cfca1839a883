// What a closed stage-1 round leaves for the engine's next steps, all under
// runs/<run>/stage1/round-<k>/:
//
// - summary.json: the paper's figures for the round (§4: seconds per mask, masks per image), and
//   clicks per mask, per annotator and overall, with the model that assisted.
// - export/instances.json: the accepted masks as COCO instances (compressed RLE, area, bbox), one
//   image entry per annotated image whose file_name is its copy in export/images/.
// - export/training-set.json: the training-set manifest trainSam reads (trainer/sae_trainer/worker.py),
//   so the round's masks can retrain the model with the images beside them.
// - runs/<run>/stage1/provenance/<shard>/round-<k>.jsonl: who annotated each image, with what model,
//   clicks and seconds, for the dataset manifest (lib/stage1/provenance.ts).
//
// Each annotation keeps its provenance (annotator, seconds, clicks, model, submission id) as extra
// keys, which COCO readers (pycocotools) ignore.
import { z } from 'zod';
import { mean, median, quantile } from '../audit/figures.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { decompressRle, rleArea, rleToBbox } from '../rle.ts';
import { runLayout } from '../run-layout.ts';
import { readPlan } from '../stage3/shard-plan.ts';
import type { AnnotationRecord } from './annotations.ts';
import { writeRoundProvenance } from './provenance.ts';

const recordSchema = z.object({
  run: z.string(),
  round: z.number().int(),
  imageId: z.number().int().nonnegative(),
  image: z.string().min(1),
  annotator: z.string().min(1),
  submissionId: z.string().min(1),
  mask: z.object({ size: z.tuple([z.number().int(), z.number().int()]), counts: z.string() }),
  seconds: z.number().nonnegative(),
  clicks: z.number().int().nonnegative(),
  model: z.string(),
  acceptedAt: z.string(),
  prefilled: z.boolean().optional(),
});

/** Every accepted annotation of the round, in key order (image, then submission id). */
export async function readRoundAnnotations(
  out: ObjectStore,
  runId: string,
  round: number,
  onRead: (count: number) => void = () => {},
): Promise<AnnotationRecord[]> {
  const records: AnnotationRecord[] = [];
  for await (const key of out.listKeys(runLayout.stage1AnnotationsPrefix(runId, round))) {
    const parsed = recordSchema.safeParse(JSON.parse((await out.get(key)).toString('utf8')));
    if (!parsed.success)
      throw new Error(`${out.uri(key)} is not an annotation record: ${parsed.error.message}`);
    records.push(parsed.data);
    onRead(records.length);
  }
  return records;
}

export interface SecondsSummary {
  masks: number;
  medianSeconds: number | null;
  p90Seconds: number | null;
  meanClicks: number | null;
}

/** Stage 1 (assisted-manual) or stage 2 (semi-automatic, pre-filled by the detector). */
export type AnnotationStage = 'stage1' | 'stage2';

export interface RoundSummary {
  run: string;
  round: number;
  /** Absent in summaries written before rounds said their stage. */
  stage?: AnnotationStage;
  masks: number;
  imagesAnnotated: number;
  imagesFlagged: number;
  /** Every mask, pre-filled ones included (the paper's masks per image). */
  masksPerImage: { mean: number | null; median: number | null };
  /** Of the masks people added (pre-filled masks take no one's time). */
  secondsPerMask: { median: number | null; p90: number | null };
  clicksPerMask: { mean: number | null; median: number | null };
  /** Masks people added, per annotated image. */
  added: { masks: number; perImage: number | null };
  /** Stage 2: pre-filled masks kept and deleted (0 in a round without pre-fill). */
  prefilled: { masks: number; perImage: number | null; rejected: number };
  /** The models whose decoder assisted, with how many masks each. */
  models: Record<string, number>;
  annotators: Record<string, SecondsSummary>;
}

/** The round's figures from its accepted annotations. */
export function summarizeRound(
  runId: string,
  round: number,
  records: readonly AnnotationRecord[],
  imagesFlagged = 0,
  rejectedPrefill = 0,
  stage: AnnotationStage = 'stage1',
): RoundSummary {
  const perImage = countBy(records, (r) => String(r.imageId));
  const models = countBy(records, (r) => r.model);
  const annotators: Record<string, SecondsSummary> = {};
  for (const name of Object.keys(countBy(records, (r) => r.annotator)).sort()) {
    annotators[name] = secondsSummary(records.filter((r) => r.annotator === name));
  }
  const perImageCounts = Object.values(perImage);
  const added = records.filter((r) => !r.prefilled);
  const prefilled = records.length - added.length;
  const clicks = added.map((r) => r.clicks);
  const seconds = added.map((r) => r.seconds);
  const per = (n: number) => (perImageCounts.length > 0 ? n / perImageCounts.length : null);
  return {
    run: runId,
    round,
    stage,
    masks: records.length,
    imagesAnnotated: perImageCounts.length,
    imagesFlagged,
    masksPerImage: { mean: mean(perImageCounts), median: median(perImageCounts) },
    secondsPerMask: { median: median(seconds), p90: quantile(seconds, 0.9) },
    clicksPerMask: { mean: mean(clicks), median: median(clicks) },
    added: { masks: added.length, perImage: per(added.length) },
    prefilled: { masks: prefilled, perImage: per(prefilled), rejected: rejectedPrefill },
    models,
    annotators,
  };
}

function secondsSummary(records: readonly AnnotationRecord[]): SecondsSummary {
  const seconds = records.map((r) => r.seconds);
  return {
    masks: records.length,
    medianSeconds: median(seconds),
    p90Seconds: quantile(seconds, 0.9),
    meanClicks: mean(records.map((r) => r.clicks)),
  };
}

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

export interface CocoInstances {
  info: Record<string, unknown>;
  images: { id: number; file_name: string; width: number; height: number; source: string }[];
  annotations: {
    id: number;
    image_id: number;
    category_id: number;
    segmentation: { size: [number, number]; counts: string };
    area: number;
    bbox: [number, number, number, number];
    iscrowd: 0;
    annotator: string;
    seconds: number;
    clicks: number;
    model: string;
    submission_id: string;
    /** Stage 2: a detector's pre-filled mask that the annotators kept. */
    prefilled: boolean;
  }[];
  categories: { id: number; name: string }[];
}

/** The round's annotations as COCO instances; images are named `<image-id>.<ext>` of their source. */
export function roundCoco(runId: string, round: number, records: readonly AnnotationRecord[]): CocoInstances {
  const images = new Map<number, CocoInstances['images'][number]>();
  const annotations: CocoInstances['annotations'] = [];
  for (const r of records) {
    const [h, w] = r.mask.size;
    if (!images.has(r.imageId)) {
      images.set(r.imageId, {
        id: r.imageId,
        file_name: exportImageName(r),
        width: w,
        height: h,
        source: r.image,
      });
    }
    const rle = decompressRle(r.mask);
    annotations.push({
      id: annotations.length + 1,
      image_id: r.imageId,
      // Class-agnostic, as SA-1B: every mask is an "object".
      category_id: 1,
      segmentation: { size: [h, w], counts: r.mask.counts },
      area: rleArea(rle),
      bbox: rleToBbox(rle),
      iscrowd: 0,
      annotator: r.annotator,
      seconds: r.seconds,
      clicks: r.clicks,
      model: r.model,
      submission_id: r.submissionId,
      prefilled: r.prefilled ?? false,
    });
  }
  return {
    info: { description: `sa-engine run ${runId}, stage 1 round ${round}` },
    images: [...images.values()],
    annotations,
    categories: [{ id: 1, name: 'object' }],
  };
}

function exportImageName(record: AnnotationRecord): string {
  const last = record.image.slice(record.image.lastIndexOf('/') + 1);
  const dot = last.lastIndexOf('.');
  return `${record.imageId}${dot > 0 ? last.slice(dot).toLowerCase() : ''}`;
}

export interface RoundExport {
  summary: RoundSummary;
  summaryKey: string;
  cocoKey: string;
  trainingSetKey: string;
}

/**
 * Writes the round's summary, COCO instances, image copies and training-set manifest. Rewrites
 * everything each time from what is stored, so a retried export gives the same files.
 */
export async function exportRound(
  out: ObjectStore,
  stores: StoreCache,
  runId: string,
  round: number,
  onProgress: (done: number) => void = () => {},
  stage: AnnotationStage = 'stage1',
): Promise<RoundExport> {
  const records = await readRoundAnnotations(out, runId, round, onProgress);
  const flagged = new Set<string>();
  for await (const key of out.listKeys(runLayout.stage1FlagsPrefix(runId, round))) {
    flagged.add(key.split('/').at(-2)!);
  }
  let rejected = 0;
  for await (const page of out.list(runLayout.stage2RejectionsPrefix(runId, round))) rejected += page.length;
  const coco = roundCoco(runId, round, records);
  const cocoKey = runLayout.stage1RoundCoco(runId, round);
  const imagesPrefix = cocoKey.slice(0, cocoKey.lastIndexOf('/')) + '/images';
  for (const [done, image] of coco.images.entries()) {
    const key = `${imagesPrefix}/${image.file_name}`;
    if (!(await out.exists(key))) {
      const { store, key: sourceKey } = stores.locate(image.source);
      await out.put(key, await store.getStream(sourceKey));
    }
    onProgress(records.length + done + 1);
  }
  await out.put(cocoKey, JSON.stringify(coco), { contentType: 'application/json' });

  const trainingSetKey = runLayout.stage1RoundTrainingSet(runId, round);
  const manifest = { format: 'coco-instances/1', annotations: cocoKey, imagesPrefix };
  await out.put(trainingSetKey, JSON.stringify(manifest, null, 2) + '\n', {
    contentType: 'application/json',
  });

  const plan = await readPlan(out, runId);
  if (!plan) throw new Error(`run ${runId} has no plan at ${out.uri(runLayout.stage3Plan(runId))}`);
  await writeRoundProvenance(out, runId, round, records, plan.shardSize);

  const summary = summarizeRound(runId, round, records, flagged.size, rejected, stage);
  const summaryKey = runLayout.stage1RoundSummary(runId, round);
  await out.put(summaryKey, JSON.stringify(summary, null, 2) + '\n', { contentType: 'application/json' });
  return { summary, summaryKey, cocoKey, trainingSetKey };
}
