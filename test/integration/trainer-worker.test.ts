// The Python training worker (PyTorch) called from a TypeScript workflow: retrainSam claims a
// version in the model registry (in the S3 server), trains it from a training-set manifest,
// measures it and the champion on the held-out split, and promotes it only through the gate.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelRegistry } from '../../lib/models/registry.ts';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { retrainDetector } from '../../workflows/retrain-detector.ts';
import { retrainSam } from '../../workflows/retrain.ts';
import { SAE_MODEL } from '../../workflows/search-attributes.ts';
import { spawnTrainerProcess, type WorkerProcess } from '../helpers/processes.ts';
import { storeOptionsFor, startTestWorkers } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';

const stack = testStack();

describe('retrainSam on the Python training worker', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sae-trainer-test-'));
  const prefix = `trainer-${randomUUID().slice(0, 8)}`;
  let store: ObjectStore;
  let trainer: WorkerProcess;
  let workers: RunningWorkers;
  let connection: Connection;

  beforeAll(async () => {
    store = openObjectStore(`s3://${stack.s3.bucket}/${prefix}`, storeOptionsFor(stack));
    await generateSynthDataset({
      images: 4,
      seed: 5,
      write: (key, bytes) => store.put(`data/${key}`, Buffer.from(bytes)),
    });
    const split = { annotations: 'data/annotations.json', imagesPrefix: 'data' };
    await store.put(
      'data/manifest.json',
      JSON.stringify({ format: 'coco-instances/1', ...split, holdout: split }),
    );
    trainer = await spawnTrainerProcess(stack, { logFile: join(stateDir, 'trainer.log'), stateDir });
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration]);
    connection = await Connection.connect({ address: stack.temporal.address });
  });

  afterAll(async () => {
    await trainer?.kill();
    await workers?.shutdown();
    await connection?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('trains versions into the registry, gates them against the champion, and records why', async () => {
    const client = new Client({ connection, namespace: stack.temporal.namespace });
    const registryUri = `${store.rootUri.replace(/\/+$/, '')}/registry`;
    const retrain = (n: number, minGain: number) =>
      client.workflow.execute(retrainSam, {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: `${prefix}/retrain-${n}`,
        args: [
          {
            registry: registryUri,
            modelName: 'test-model',
            // A 256-px model and two steps keep this to a minute on a CPU; the contract is what is tested.
            train: {
              storage: store.rootUri,
              trainingSet: 'data/manifest.json',
              mode: 'full',
              steps: 2,
              batchSize: 1,
              masksPerImage: 1,
              numPoints: 1,
              seed: n,
              model: { encoder: 'tiny', imageSize: 256 },
            },
            evaluation: { storage: store.rootUri, dataset: 'data/manifest.json', maxImages: 2 },
            gate: { minGain, maxNoc90Loss: 0 },
            trigger: `test retrain ${n}`,
          },
        ],
      });

    const first = await retrain(1, 0.01);
    expect(first).toMatchObject({ version: 1, parent: null, promoted: true, championMetrics: null });
    expect(first.reason).toContain('no champion yet');
    expect(first.metrics.images).toBe(2);
    expect(first.metrics.miou_1click).toBeGreaterThanOrEqual(0);
    // The reference figures travel with the rest: the disk always overlaps its mask at the click.
    expect(first.metrics.miou_1click_disk).toBeGreaterThan(0);

    // No model gains a whole IoU point: the gate refuses, and the version stays with its reason.
    const second = await retrain(2, 1);
    expect(second).toMatchObject({ version: 2, parent: 1, promoted: false });
    expect(second.reason).toMatch(/^refused: 1-click mIoU .* needs ≥ \+1\.000/);
    expect(second.championMetrics?.images).toBe(2);

    const registry = new ModelRegistry(openObjectStore(registryUri, storeOptionsFor(stack)));
    expect(await registry.resolve('test-model', 'champion')).toBe(1);
    const lineage = await registry.lineage('test-model', 2);
    expect(lineage).toMatchObject({
      parent: { name: 'test-model', version: 1 },
      steps: 2,
      trigger: 'test retrain 2',
      gate: { promoted: false, champion: { name: 'test-model', version: 1 } },
    });
    expect(lineage.trainingSet?.uri).toBe(`${store.rootUri.replace(/\/+$/, '')}/data/manifest.json`);
    expect(lineage.trainingSet?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(lineage.files.map((f) => f.name)).toEqual(
      expect.arrayContaining([
        'model.json',
        'encoder.onnx',
        'decoder.onnx',
        'decoder_batched.onnx',
        'checkpoint.pt',
      ]),
    );
    // The trainer names the package after its registry version (a 256-px test model is not one the
    // engine loads: model.json is read as it is).
    const modelJson = JSON.parse((await registry.store.get('test-model/v2/model.json')).toString('utf8'));
    expect(modelJson).toMatchObject({ name: 'test-model', version: 'v2' });
    const description = await client.workflow.getHandle(`${prefix}/retrain-2`).describe();
    expect(description.typedSearchAttributes.get(SAE_MODEL)).toBe('test-model@v2');

    // Run again under the same ids (a rerun, or a reset): the complete versions are returned as
    // recorded, and nothing is trained or measured again.
    expect(await retrain(1, 0.01)).toEqual(first);
    expect(await retrain(2, 1)).toEqual(second);
    for (const n of [1, 2]) {
      const history = await client.workflow.getHandle(`${prefix}/retrain-${n}`).fetchHistory();
      const scheduled = (history.events ?? []).flatMap((e) =>
        e.activityTaskScheduledEventAttributes?.activityType?.name
          ? [e.activityTaskScheduledEventAttributes.activityType.name]
          : [],
      );
      expect(scheduled).toEqual(['resolveModelAlias', 'claimModelVersion']);
    }
  });

  it("trains stage 2's detector on a SAM version's embeddings, gates it, and starts over on a new encoder", async () => {
    // The SAM versions of the test above: test-model v1 (champion) and v2 (full mode: a new encoder).
    const client = new Client({ connection, namespace: stack.temporal.namespace });
    const registryUri = `${store.rootUri.replace(/\/+$/, '')}/registry`;
    const retrain = (n: number, sam: string, minGain: number) =>
      client.workflow.execute(retrainDetector, {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: `${prefix}/detector-retrain-${n}`,
        args: [
          {
            registry: registryUri,
            detectorName: 'test-detector',
            sam,
            train: {
              storage: store.rootUri,
              trainingSet: 'data/manifest.json',
              steps: 3,
              batchSize: 2,
              width: 16,
              dilations: [1],
              seed: n,
            },
            evaluation: { storage: store.rootUri, dataset: 'data/manifest.json', maxImages: 2 },
            gate: { minGain },
            trigger: `test detector retrain ${n}`,
          },
        ],
      });

    const first = await retrain(1, 'test-model/v1', 0);
    expect(first).toMatchObject({ version: 1, parent: null, promoted: true, championMetrics: null });
    expect(first.metrics.images).toBe(2);
    expect(first.metrics.boxes).toBeGreaterThan(0);

    // Continued from the champion; no detector gains a whole AP point: refused, and kept.
    const second = await retrain(2, 'test-model/v1', 1);
    expect(second).toMatchObject({ version: 2, parent: 1, promoted: false });
    expect(second.reason).toMatch(/^refused: box AP .* needs ≥ \+1\.000/);
    expect(second.championMetrics?.boxes).toBe(first.metrics.boxes);

    // SAM v2 has another encoder: the champion cannot be measured on it, so v3 starts from scratch.
    const third = await retrain(3, 'test-model/v2', 1);
    expect(third).toMatchObject({ version: 3, parent: null, promoted: true, championMetrics: null });
    expect(third.reason).toContain('reads another SAM encoder');

    const registry = new ModelRegistry(openObjectStore(registryUri, storeOptionsFor(stack)));
    expect(await registry.resolve('test-detector', 'champion')).toBe(3);
    const modelJson = JSON.parse((await registry.store.get('test-detector/v3/model.json')).toString('utf8'));
    expect(modelJson).toMatchObject({
      name: 'test-detector',
      version: 'v3',
      sam: { model: 'test-model/v2' },
    });
    expect((await registry.lineage('test-detector', 2)).gate).toMatchObject({ promoted: false });
    // A rerun returns the recorded version without training again.
    expect(await retrain(2, 'test-model/v1', 1)).toMatchObject({ version: 2, promoted: false });
    // v3's run died after recording its decision, before moving the champion: a rerun moves it.
    await registry.moveAlias('test-detector', 'champion', 1, {
      expected: 3,
      reason: 'as if v3 never moved it',
    });
    expect(await retrain(3, 'test-model/v2', 1)).toMatchObject({ version: 3, promoted: true });
    expect(await registry.resolve('test-detector', 'champion')).toBe(3);
  });
});
