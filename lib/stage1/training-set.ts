// The training set of a retrain: the accepted masks of the run's rounds so far as COCO instances,
// split by image into what the model trains on and the run's evaluation set. The split depends on
// the image id alone, so an image held out once is held out in every later set and never trained
// on: the candidate and the champion are always measured on masks neither has seen.
//
//   runs/<run>/stage1/training/set-<n>/train.json, holdout.json   COCO instances
//   runs/<run>/stage1/training/set-<n>/manifest.json              what trainSam and evaluateSam read
//
// Images are the rounds' export copies (round-<k>/export/images/), so the set needs no image source.
import type { ObjectStore } from '../object-store.ts';
import { runLayout, type TrainingSetKind } from '../run-layout.ts';
import type { CocoInstances } from './round-export.ts';

export interface TrainingSetSummary {
  /** Key of the manifest (format coco-instances/1, with its holdout split). */
  manifestKey: string;
  trainImages: number;
  trainMasks: number;
  holdoutImages: number;
  holdoutMasks: number;
}

/** Whether an image belongs to the run's evaluation set: spread evenly over ids (golden-ratio steps). */
export function isHeldOut(imageId: number, holdoutFraction: number): boolean {
  const position = (imageId * 0.6180339887498949) % 1;
  return position < holdoutFraction;
}

export async function buildTrainingSet(
  out: ObjectStore,
  runId: string,
  rounds: readonly number[],
  set: number,
  holdoutFraction: number,
  kind: TrainingSetKind = 'sam',
): Promise<TrainingSetSummary> {
  const train = emptyCoco(`sa-engine run ${runId}, training set ${set}: rounds ${rounds.join(', ')}`);
  const holdout = emptyCoco(`sa-engine run ${runId}, evaluation set (held out of every training set)`);
  for (const round of rounds) {
    const coco = JSON.parse(
      (await out.get(runLayout.stage1RoundCoco(runId, round))).toString('utf8'),
    ) as CocoInstances;
    for (const image of coco.images) {
      const target = isHeldOut(image.id, holdoutFraction) ? holdout : train;
      target.images.push({ ...image, file_name: `round-${round}/export/images/${image.file_name}` });
    }
    for (const annotation of coco.annotations) {
      const target = isHeldOut(annotation.image_id, holdoutFraction) ? holdout : train;
      target.annotations.push({ ...annotation, id: target.annotations.length + 1 });
    }
  }
  const prefix = runLayout.stage1TrainingSet(runId, set, kind);
  const json = { contentType: 'application/json' };
  await out.put(`${prefix}/train.json`, JSON.stringify(train), json);
  await out.put(`${prefix}/holdout.json`, JSON.stringify(holdout), json);
  const imagesPrefix = `runs/${runId}/stage1`;
  const manifest = {
    format: 'coco-instances/1',
    annotations: `${prefix}/train.json`,
    imagesPrefix,
    holdout: { annotations: `${prefix}/holdout.json`, imagesPrefix },
  };
  const manifestKey = `${prefix}/manifest.json`;
  await out.put(manifestKey, JSON.stringify(manifest, null, 2) + '\n', json);
  return {
    manifestKey,
    trainImages: train.images.length,
    trainMasks: train.annotations.length,
    holdoutImages: holdout.images.length,
    holdoutMasks: holdout.annotations.length,
  };
}

function emptyCoco(description: string): CocoInstances {
  return { info: { description }, images: [], annotations: [], categories: [{ id: 1, name: 'object' }] };
}
