// lib/models/trigger.ts decides when a run retrains; lib/stage1/training-set.ts builds what it
// trains on, with the run's evaluation set held out of every training set.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { retrainDue, type RetrainPolicy } from '../../lib/models/trigger.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { CocoInstances } from '../../lib/stage1/round-export.ts';
import { buildTrainingSet, isHeldOut } from '../../lib/stage1/training-set.ts';

const policy: RetrainPolicy = { minNewMasks: 100, minGrowth: 0.5, minIntervalMs: 60_000 };
const idle = { running: false, lastRetrainAt: null, now: 1_000_000 };

describe('retrainDue', () => {
  it('fires on N new masks since the run began, and says why', () => {
    expect(retrainDue(policy, { ...idle, masks: 99, masksAtLastRetrain: 0 })).toEqual({
      due: false,
      reason: '99 new masks in the run, fewer than 100',
    });
    expect(retrainDue(policy, { ...idle, masks: 100, masksAtLastRetrain: 0 })).toEqual({
      due: true,
      reason: '100 new masks in the run (≥ 100)',
    });
  });

  it('fires on growth since the last retrain, but not sooner than the minimum interval', () => {
    const after = { masks: 160, masksAtLastRetrain: 100, running: false };
    expect(retrainDue(policy, { ...after, lastRetrainAt: 990_000, now: 1_000_000 })).toMatchObject({
      due: false,
      reason: 'the last retrain started less than the minimum interval ago (50 s left)',
    });
    expect(retrainDue(policy, { ...after, lastRetrainAt: 900_000, now: 1_000_000 })).toEqual({
      due: true,
      reason: 'masks grew by 60% since the last retrain (100) (≥ 50%)',
    });
  });

  it('never fires twice for the same count, nor while a retrain runs', () => {
    expect(retrainDue(policy, { ...idle, masks: 500, masksAtLastRetrain: 500 }).due).toBe(false);
    expect(retrainDue(policy, { ...idle, masks: 900, masksAtLastRetrain: 0, running: true })).toEqual({
      due: false,
      reason: 'a retrain is running',
    });
  });
});

describe('buildTrainingSet', () => {
  it('holds the same images out of every set, by id, and trains on the rest of every round', async () => {
    const root = await mkdtemp(join(tmpdir(), 'sae-training-set-'));
    try {
      const out = openObjectStore(pathToFileURL(root).href);
      const coco = (ids: number[]): CocoInstances => ({
        info: {},
        images: ids.map((id) => ({
          id,
          file_name: `${id}.jpg`,
          width: 4,
          height: 4,
          source: `s3://b/${id}.jpg`,
        })),
        annotations: ids.map((id, i) => ({
          id: i + 1,
          image_id: id,
          category_id: 1,
          segmentation: { size: [4, 4], counts: '04' },
          area: 4,
          bbox: [0, 0, 1, 4],
          iscrowd: 0,
          annotator: 'a',
          seconds: 1,
          clicks: 1,
          model: 'sam@v1',
          submission_id: `s${id}`,
          prefilled: false,
        })),
        categories: [{ id: 1, name: 'object' }],
      });
      await out.put(runLayout.stage1RoundCoco('r', 1), JSON.stringify(coco([0, 1, 2])));
      await out.put(runLayout.stage1RoundCoco('r', 2), JSON.stringify(coco([3, 4, 5])));
      const held = [0, 1, 2, 3, 4, 5].filter((id) => isHeldOut(id, 0.4));
      expect(held).toEqual([0, 2, 5]);

      const first = await buildTrainingSet(out, 'r', [1], 1, 0.4);
      const second = await buildTrainingSet(out, 'r', [1, 2], 2, 0.4);
      expect(first).toMatchObject({ trainImages: 1, holdoutImages: 2 });
      expect(second).toMatchObject({ trainImages: 3, trainMasks: 3, holdoutImages: 3, holdoutMasks: 3 });
      const manifest = JSON.parse((await out.get(second.manifestKey)).toString('utf8'));
      expect(manifest).toEqual({
        format: 'coco-instances/1',
        annotations: 'runs/r/stage1/training/set-2/train.json',
        imagesPrefix: 'runs/r/stage1',
        holdout: { annotations: 'runs/r/stage1/training/set-2/holdout.json', imagesPrefix: 'runs/r/stage1' },
      });
      const train = JSON.parse((await out.get(manifest.annotations)).toString('utf8')) as CocoInstances;
      expect(train.images.map((i) => [i.id, i.file_name])).toEqual([
        [1, 'round-1/export/images/1.jpg'],
        [3, 'round-2/export/images/3.jpg'],
        [4, 'round-2/export/images/4.jpg'],
      ]);
      expect(train.annotations.map((a) => a.id)).toEqual([1, 2, 3]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
