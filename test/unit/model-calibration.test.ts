// Calibrating a version the engine trained (lib/amg/calibration-set.ts, activities/calibration.ts):
// the AMG's thresholds measured on a run's held-out images with the masks accepted on them, written
// into the version's model.json before it completes — the rest of the file byte for byte, a retry
// measuring nothing again, and an evaluation set it cannot use refused by name.
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCalibrationActivities,
  type CalibrateModelVersionResult,
} from '../../activities/calibration.ts';
import {
  calibrateOnHoldout,
  CalibrationInputError,
  measureCalibrationImages,
} from '../../lib/amg/calibration-set.ts';
import { openReference } from '../../lib/audit/reference.ts';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { readModelPackage, resolveAmgThresholds } from '../../lib/sam/model-package.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';

const MODEL = resolve(import.meta.dirname, '../../models/sae-ref');
const SET = 'runs/r/stage1/training/set-1';
const MANIFEST = `${SET}/manifest.json`;

interface Coco {
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations: { image_id: number }[];
}

describe('calibrating a promoted version on the run held-out images', () => {
  const root = mkdtempSync(join(tmpdir(), 'sae-model-calibration-'));
  const outUri = pathToFileURL(join(root, 'out')).href;
  let out: ObjectStore;
  let holdout: Coco;
  let session: SamSession;
  const stores = new StoreCache();

  beforeAll(async () => {
    out = openObjectStore(outUri);
    // A round's export as a training set holds it: images under round-1/export/, a holdout split.
    const exportPrefix = 'runs/r/stage1/round-1/export';
    await generateSynthDataset({
      images: 3,
      seed: 4242,
      write: (key, bytes) => out.put(`${exportPrefix}/${key}`, Buffer.from(bytes)),
    });
    const coco = JSON.parse((await out.get(`${exportPrefix}/${ANNOTATIONS_KEY}`)).toString('utf8')) as Coco;
    holdout = {
      ...coco,
      images: coco.images.map((i) => ({ ...i, file_name: `round-1/export/${i.file_name}` })),
    };
    await out.put(`${SET}/holdout.json`, JSON.stringify(holdout));
    await out.put(
      MANIFEST,
      JSON.stringify({
        format: 'coco-instances/1',
        annotations: `${SET}/train.json`,
        imagesPrefix: 'runs/r/stage1',
        holdout: { annotations: `${SET}/holdout.json`, imagesPrefix: 'runs/r/stage1' },
      }),
    );
    session = await SamSession.load(MODEL);
  }, 60_000);

  afterAll(async () => {
    await session?.release();
    await stores.close();
    rmSync(root, { recursive: true, force: true });
  });

  it(
    'measures the first maxImages held-out images against their accepted masks',
    { timeout: 120_000 },
    async () => {
      const measured = await calibrateOnHoldout(session, out, stores, {
        outUri,
        manifestKey: MANIFEST,
        maxImages: 2,
        pointsPerSide: 4,
      });
      expect(measured).not.toBeNull();
      const record = measured!;
      expect(record.inherited_from).toBeUndefined();
      const [first, second] = holdout.images;
      const firstTwoMasks = holdout.annotations.filter(
        (a) => a.image_id === first!.id || a.image_id === second!.id,
      ).length;
      expect(firstTwoMasks).toBeLessThan(holdout.annotations.length);
      expect(record.figures).toMatchObject({ images: 2, ground_truth_masks: firstTwoMasks });
      expect(record.official_figures).toMatchObject({ images: 2, ground_truth_masks: firstTwoMasks });
      expect(record.points_per_side).toBe(4);
      expect(record.measured_on).toBe(
        `2 held-out images of ${out.uri(MANIFEST)} with the masks annotators accepted ` +
          '(not every object: precision is a lower bound)',
      );
      for (const t of [record.pred_iou_thresh, record.stability_score_thresh]) {
        expect(t).toBeGreaterThanOrEqual(0);
        expect(t).toBeLessThanOrEqual(1);
      }
    },
  );

  it('refuses an evaluation set without a holdout split, or with no images in it', async () => {
    await out.put('runs/r/no-holdout.json', JSON.stringify({ format: 'coco-instances/1', annotations: 'x' }));
    const calibrateOn = (manifestKey: string) =>
      calibrateOnHoldout(session, out, stores, { outUri, manifestKey, maxImages: 1, pointsPerSide: 4 });
    await expect(calibrateOn('runs/r/no-holdout.json')).rejects.toThrow(CalibrationInputError);
    await expect(calibrateOn('runs/r/no-holdout.json')).rejects.toThrow(
      /has no holdout split to calibrate on/,
    );

    await out.put('runs/r/empty/holdout.json', JSON.stringify({ ...holdout, images: [], annotations: [] }));
    await out.put(
      'runs/r/empty/manifest.json',
      JSON.stringify({
        holdout: { annotations: 'runs/r/empty/holdout.json', imagesPrefix: 'runs/r/stage1' },
      }),
    );
    await expect(calibrateOn('runs/r/empty/manifest.json')).rejects.toThrow(
      /holds no images to calibrate on/,
    );
  });

  it(
    'keeps the parent thresholds when no pair keeps a correct mask, and gives none without a parent',
    { timeout: 120_000 },
    async () => {
      // Held-out masks of one pixel each: no candidate of the AMG reaches IoU 0.5 with any.
      const dots = {
        ...holdout,
        annotations: holdout.images.map((image, i) => ({
          id: i + 1,
          image_id: image.id,
          iscrowd: 0,
          segmentation: { size: [image.height, image.width], counts: [0, 1, image.height * image.width - 1] },
        })),
      };
      await out.put('runs/r/dots/holdout.json', JSON.stringify(dots));
      const manifestKey = 'runs/r/dots/manifest.json';
      await out.put(
        manifestKey,
        JSON.stringify({
          holdout: { annotations: 'runs/r/dots/holdout.json', imagesPrefix: 'runs/r/stage1' },
        }),
      );
      const settings = { outUri, manifestKey, maxImages: 1, pointsPerSide: 4 };
      expect(await calibrateOnHoldout(session, out, stores, settings)).toBeNull();

      const inherited = await calibrateOnHoldout(session, out, stores, {
        ...settings,
        inherit: { thresholds: { predIouThresh: 0.26, stabilityScoreThresh: 0.45 }, from: 'sam v1' },
      });
      expect(inherited).toMatchObject({
        pred_iou_thresh: 0.26,
        stability_score_thresh: 0.45,
        inherited_from: 'sam v1',
        figures: { images: 1, ground_truth_masks: 1, matched_at_iou_0_5: 0 },
      });
      // The figures are the inherited pair's on these images: the AMG keeps masks there.
      expect(inherited!.figures.masks).toBeGreaterThan(0);

      // The activity reads the parent's pair from the registry and writes it, marked, into the version.
      const registry = join(root, 'dots-registry');
      cpSync(MODEL, join(registry, 'sam', 'v1'), { recursive: true });
      const child = join(registry, 'sam', 'v2');
      cpSync(MODEL, child, { recursive: true });
      const trained = JSON.parse(readFileSync(join(child, 'model.json'), 'utf8')) as Record<string, unknown>;
      delete trained.amg_calibration;
      writeFileSync(join(child, 'model.json'), JSON.stringify(trained, null, 2));
      const parentPair = (await readModelPackage(join(registry, 'sam', 'v1'))).amgCalibration!;
      const activities = createCalibrationActivities();
      const input = {
        modelUri: pathToFileURL(child).href,
        storage: outUri,
        dataset: manifestKey,
        maxImages: 1,
      };
      const orphan = (await new MockActivityEnvironment().run(activities.calibrateModelVersion, {
        ...input,
        pointsPerSide: 4,
        parent: null,
      })) as CalibrateModelVersionResult;
      expect(orphan.calibration).toBeNull();
      expect(readFileSync(join(child, 'model.json'), 'utf8')).toBe(JSON.stringify(trained, null, 2));

      const result = (await new MockActivityEnvironment().run(activities.calibrateModelVersion, {
        ...input,
        pointsPerSide: 4,
        parent: { registry: pathToFileURL(registry).href, name: 'sam', version: 1 },
      })) as CalibrateModelVersionResult;
      expect(result.calibration).toMatchObject({
        pred_iou_thresh: parentPair.predIouThresh,
        stability_score_thresh: parentPair.stabilityScoreThresh,
        inherited_from: 'sam v1',
      });
      expect(resolveAmgThresholds(await readModelPackage(child), { thresholds: 'model' })).toEqual({
        predIouThresh: parentPair.predIouThresh,
        stabilityScoreThresh: parentPair.stabilityScoreThresh,
      });
    },
  );

  it('refuses an image the reference has no masks for before running the AMG on any', async () => {
    const reference = await openReference(stores, {
      uri: out.uri(`${SET}/holdout.json`),
      format: 'coco',
      ignoreValue: null,
    });
    const known = holdout.images[0]!.file_name;
    const images = [known, 'round-1/export/images/not-annotated.png'].map((name) => ({
      key: out.uri(`runs/r/stage1/${name}`),
      bytes: () => out.get(`runs/r/stage1/${name}`),
    }));
    const measured: number[] = [];
    await expect(
      measureCalibrationImages(session, images, reference, stores, {
        pointsPerSide: 4,
        onImage: (m) => measured.push(m.index),
      }),
    ).rejects.toThrow(/has no masks for .*not-annotated\.png/);
    expect(measured).toEqual([]);
  });

  it(
    'the activity writes amg_calibration into the version, keeps the rest of model.json, and a retry measures nothing',
    { timeout: 120_000 },
    async () => {
      // A version as the trainer leaves it: the package without a calibration.
      const version = join(root, 'registry', 'sam', 'v2');
      cpSync(MODEL, version, { recursive: true });
      const trained = JSON.parse(readFileSync(join(version, 'model.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      delete trained.amg_calibration;
      const trainedText = JSON.stringify(trained, null, 2);
      writeFileSync(join(version, 'model.json'), trainedText);
      expect((await readModelPackage(version)).amgCalibration).toBeNull();

      const activities = createCalibrationActivities();
      const env = new MockActivityEnvironment();
      const beats: unknown[] = [];
      env.on('heartbeat', (details: unknown) => beats.push(details));
      const input = {
        modelUri: pathToFileURL(version).href,
        storage: outUri,
        dataset: MANIFEST,
        maxImages: 2,
        pointsPerSide: 4,
      };
      const result = (await env.run(activities.calibrateModelVersion, input)) as CalibrateModelVersionResult;
      const calibration = result.calibration!;

      const text = readFileSync(join(version, 'model.json'), 'utf8');
      expect(text.startsWith(trainedText.replace(/\s*\}\s*$/, ''))).toBe(true);
      expect((JSON.parse(text) as { amg_calibration: unknown }).amg_calibration).toEqual(result.calibration);
      expect(calibration.figures).toMatchObject({ images: 2 });
      expect(result.modelJson).toEqual({
        name: 'model.json',
        bytes: Buffer.byteLength(text),
        sha256: createHash('sha256').update(text).digest('hex'),
      });
      expect(beats).toEqual([
        { image: 1, candidates: expect.any(Number) },
        { image: 2, candidates: expect.any(Number) },
      ]);
      // Stage 3 with `thresholds: model` now takes this version's own pair.
      expect(resolveAmgThresholds(await readModelPackage(version), { thresholds: 'model' })).toEqual({
        predIouThresh: calibration.pred_iou_thresh,
        stabilityScoreThresh: calibration.stability_score_thresh,
      });

      // A retried attempt: the evaluation set is gone, yet it returns what is in model.json.
      await out.delete(MANIFEST);
      const again = (await new MockActivityEnvironment().run(
        activities.calibrateModelVersion,
        input,
      )) as CalibrateModelVersionResult;
      expect(again).toEqual(result);
      expect(readFileSync(join(version, 'model.json'), 'utf8')).toBe(text);
    },
  );
});
