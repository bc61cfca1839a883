// Calibrating a SAM version the engine trained, on the inference pool (it runs the AMG): a thin
// adapter over lib/amg/calibration-set.ts. The retrain calls it for a version the gate promotes,
// before the version is completed, so that stage 3 with `thresholds: model` can segment with every
// champion the run makes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Context } from '@temporalio/activity';
import { calibrateOnHoldout, type InheritedThresholds } from '../lib/amg/calibration-set.ts';
import type { AmgCalibrationRecord } from '../lib/amg/calibration.ts';
import { lineageFile, ModelRegistry } from '../lib/models/registry.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import { localModelDir } from '../lib/sam/local-model.ts';
import { amgThresholdsOf, withAmgCalibration } from '../lib/sam/model-package.ts';
import { SamSession } from '../lib/sam/session.ts';

export interface CalibrateModelVersionInput {
  /** The version's folder (a model package the trainer wrote, not yet completed). */
  modelUri: string;
  /** The run's output store and the training-set manifest whose held-out split to measure on. */
  storage: string;
  dataset: string;
  maxImages: number;
  pointsPerSide: number;
  /**
   * The version it was trained from: its thresholds are kept when the held-out images give no basis
   * to choose (no pair keeps a correct mask; lib/amg/calibration-set.ts).
   */
  parent?: { registry: string; name: string; version: number } | null;
}

export interface CalibrateModelVersionResult {
  /** null: no pair kept a correct mask and the parent had no thresholds either; model.json is unchanged. */
  calibration: AmgCalibrationRecord | null;
  /** model.json as it now is, for the version's lineage (its file list records every SHA-256). */
  modelJson: ReturnType<typeof lineageFile>;
}

export function createCalibrationActivities(storeOptions: ObjectStoreOptions = {}) {
  const stores = new StoreCache(storeOptions);

  /** The parent version's calibrated thresholds, if it has any. */
  async function parentThresholds(
    parent: NonNullable<CalibrateModelVersionInput['parent']>,
  ): Promise<InheritedThresholds | undefined> {
    const uri = new ModelRegistry(stores.open(parent.registry)).versionUri(parent.name, parent.version);
    const thresholds = amgThresholdsOf(
      JSON.parse((await stores.open(uri).get('model.json')).toString('utf8')),
    );
    return thresholds ? { thresholds, from: `${parent.name} v${parent.version}` } : undefined;
  }

  return {
    /**
     * Measures the AMG's thresholds for the version on the run's held-out images and writes them
     * into its model.json as `amg_calibration` (the parent's, marked so, when the images give no
     * basis to choose). A retried attempt finds them there and measures nothing again (the trainer
     * never writes that field, so only this activity can have).
     */
    async calibrateModelVersion(input: CalibrateModelVersionInput): Promise<CalibrateModelVersionResult> {
      const ctx = Context.current();
      const version = stores.open(input.modelUri);
      const text = (await version.get('model.json')).toString('utf8');
      const existing = (JSON.parse(text) as { amg_calibration?: AmgCalibrationRecord }).amg_calibration;
      if (existing)
        return { calibration: existing, modelJson: lineageFile('model.json', Buffer.from(text, 'utf8')) };

      const dir = await localModelDir(input.modelUri, storeOptions);
      // Its own session, not the worker's shared one: that one would keep the model.json read
      // before the calibration, and stage 3 on this worker would find none.
      const session = await SamSession.load(dir);
      let calibration: AmgCalibrationRecord | null;
      try {
        calibration = await calibrateOnHoldout(session, stores.open(input.storage), stores, {
          outUri: input.storage,
          manifestKey: input.dataset,
          maxImages: input.maxImages,
          pointsPerSide: input.pointsPerSide,
          inherit: input.parent ? await parentThresholds(input.parent) : undefined,
          onImage: (m) => ctx.heartbeat({ image: m.index + 1, candidates: m.candidates }),
        });
      } finally {
        await session.release();
      }
      if (calibration === null)
        return { calibration, modelJson: lineageFile('model.json', Buffer.from(text)) };
      const updated = withAmgCalibration(text, calibration);
      await version.put('model.json', updated, { contentType: 'application/json' });
      // The worker's local copy of an s3:// package is what its later sessions load.
      if (input.modelUri.startsWith('s3://')) writeFileSync(join(dir, 'model.json'), updated);
      return { calibration, modelJson: lineageFile('model.json', Buffer.from(updated, 'utf8')) };
    },
  };
}

export type CalibrationActivities = ReturnType<typeof createCalibrationActivities>;
