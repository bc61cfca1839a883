// The Python training worker (PyTorch) called from a TypeScript workflow: retrainSam trains a new
// model version from a training-set manifest in the S3 server, evaluates it on the held-out split,
// and the new version's model.json and metrics.json land in storage.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { retrainSam } from '../../workflows/retrain.ts';
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

  it('trains a new version, evaluates it, and writes model.json and metrics.json', async () => {
    const client = new Client({ connection, namespace: stack.temporal.namespace });
    const result = await client.workflow.execute(retrainSam, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: `${prefix}/retrain-1`,
      args: [
        {
          // A 256-px model and two steps keep this to a minute on a CPU; the contract is what is tested.
          train: {
            storage: store.rootUri,
            trainingSet: 'data/manifest.json',
            modelName: 'test-model',
            version: 1,
            mode: 'full',
            steps: 2,
            batchSize: 1,
            masksPerImage: 1,
            numPoints: 1,
            seed: 0,
            model: { encoder: 'tiny', imageSize: 256 },
          },
          heldOut: 'data/manifest.json',
          maxEvalImages: 2,
          baseline: null,
        },
      ],
    });

    expect(result.model).toBe('models/test-model/v1');
    expect(result.promoted).toBe(true);
    expect(result.metrics.images).toBe(2);
    expect(result.metrics.miou_1click).toBeGreaterThanOrEqual(0);
    expect(result.metrics.miou_1click).toBeLessThanOrEqual(1);
    const modelJson = JSON.parse((await store.get('models/test-model/v1/model.json')).toString('utf8'));
    expect(modelJson.format).toBe('sa-engine-model/1');
    expect(modelJson.metrics.miou_1click).toBe(result.metrics.miou_1click);
    const metrics = JSON.parse((await store.get('models/test-model/v1/metrics.json')).toString('utf8'));
    expect(metrics.noc90).toBe(result.metrics.noc90);
    // The reference figures travel with the rest: the disk always overlaps its mask at the click.
    expect(result.metrics.miou_1click_disk).toBeGreaterThan(0);
    expect(metrics.miou_1click_blank).toBe(result.metrics.miou_1click_blank);
    for (const file of ['encoder.onnx', 'decoder.onnx', 'decoder_batched.onnx', 'checkpoint.pt']) {
      expect(await store.exists(`models/test-model/v1/${file}`)).toBe(true);
    }
  });
});
