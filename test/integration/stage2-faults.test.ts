// A stage-2 round when its detector does not help or its worker dies: a detector that finds
// nothing, or one trained on another SAM encoder (refused at load), leaves the round a stage-1
// round, published in full with the reason in its result, never failed; the inference worker
// SIGKILLed while it pre-fills: the batch is retried on a new worker and every image is pre-filled.
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StackInfo } from '../../infra/stack-info.ts';
import type { ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { taskStateQuery, annotationTaskWorkflowId } from '../../lib/stage1/task-messages.ts';
import type { PrefillSettings } from '../../lib/stage2/prefill.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { annotationRound, roundWorkflowId, type RoundSpec } from '../../workflows/stage1-round.ts';
import { connectClient, startOwnStack, type Cleanups } from '../helpers/own-stack.ts';
import { spawnWorkerProcess } from '../helpers/processes.ts';
import { testRoundSpec } from '../helpers/stage1-fixture.ts';
import { REFERENCE_MODEL_URI, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const REFERENCE_DETECTOR_DIR = fileURLToPath(REFERENCE_MODEL_URI).replace(/sae-ref$/, 'sae-det');

/** Loose filters: the reference detector's best boxes and every mask SAM draws from their centres. */
const LOOSE: PrefillSettings = {
  prompt: 'centre-point',
  predIouThresh: 0,
  stabilityScoreThresh: 0,
  boxNmsThresh: 0.7,
  batchSize: 8,
  detect: { scoreThreshold: 0, maxDetections: 24 },
};

/** A stage-2 round over `images` synthetic images on `stack`, started now. */
async function startStage2Round(
  stack: StackInfo,
  client: Client,
  images: number,
  overrides: Partial<RoundSpec>,
) {
  const stores = new StoreCache(storeOptionsFor(stack));
  const prefix = `stage2-faults-${randomUUID().slice(0, 8)}`;
  const runId = `test-${prefix}`;
  const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
  const outputUri = `s3://${stack.s3.bucket}/${prefix}/out`;
  const source = stores.open(imagesUri);
  await generateSynthDataset({ images, seed: 43, write: (k, b) => source.put(k, Buffer.from(b)) });
  const handle = await client.workflow.start(annotationRound, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: roundWorkflowId(runId, 1, 'stage2'),
    args: [
      testRoundSpec(
        { runId, outputUri, imagesUri, round: 1, imageCount: images },
        { stage: 'stage2', embedBatch: images, deadlineSeconds: 10, ...overrides },
      ),
    ],
  });
  return { runId, out: stores.open(outputUri), handle };
}

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.listKeys(prefix)) keys.push(key);
  return keys;
}

describe('a stage-2 round whose detector does not help', () => {
  const stack = testStack();
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  const scratch = mkdtempSync(join(tmpdir(), 'sae-stage2-faults-'));

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration, TASK_QUEUES.inference]);
  }, 120_000);
  afterAll(async () => {
    await workers?.shutdown();
    await connection?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('finds nothing: the round runs as a stage-1 round and says so', { timeout: 180_000 }, async () => {
    const detectorUri = pathToFileURL(REFERENCE_DETECTOR_DIR).href;
    const nothing = { ...LOOSE, detect: { scoreThreshold: 1, maxDetections: 24 } };
    const round = await startStage2Round(stack, client, 2, { prefill: { detectorUri, settings: nothing } });
    const result = await round.handle.result();
    expect(result.published).toBe(2);
    expect(result.prefill).toMatchObject({ detector: 'sae-det@v1', images: 0, masks: 0 });
    expect(result.prefill!.problem).toMatch(/found no confident masks: the round ran as a stage-1 round/);
    const task = await client.workflow
      .getHandle(annotationTaskWorkflowId(round.runId, 1, 0))
      .query(taskStateQuery);
    expect(task.prefill).toBeUndefined();
  });

  it(
    'reads another SAM encoder: refused at load, the round runs as a stage-1 round',
    { timeout: 180_000 },
    async () => {
      const dir = join(scratch, 'other-encoder');
      cpSync(REFERENCE_DETECTOR_DIR, dir, { recursive: true });
      const modelJson = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
      modelJson.sam.encoder_onnx_sha256 = 'f'.repeat(64);
      writeFileSync(join(dir, 'model.json'), JSON.stringify(modelJson));
      const round = await startStage2Round(stack, client, 2, {
        prefill: { detectorUri: pathToFileURL(dir).href, settings: LOOSE },
      });
      const result = await round.handle.result();
      expect(result.published).toBe(2);
      expect(result.prefill!.problem).toMatch(
        /^DetectorPackageError: .*was trained on the embeddings of .*retrain it on this model's embeddings$/,
      );
      expect(await keysUnder(round.out, `runs/${round.runId}/stage2/prefill/`)).toEqual([]);
    },
  );
});

describe('a stage-2 round whose inference worker dies', () => {
  const cleanups: Cleanups = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!().catch((err) => console.warn('cleanup:', err));
  });

  it(
    'SIGKILLed while pre-filling: the batch is retried on a new worker and every image is pre-filled',
    { timeout: 300_000 },
    async () => {
      const IMAGES = 8;
      const own = await startOwnStack(cleanups, 'sae-stage2-faults-');
      const client = await connectClient(own.info, cleanups);
      const orchestration = await startTestWorkers(own.info, [TASK_QUEUES.orchestration]);
      cleanups.push(() => orchestration.shutdown());
      const spawnInference = async (name: string) => {
        const worker = await spawnWorkerProcess(own.info, {
          queues: [TASK_QUEUES.inference],
          logFile: join(own.stateDir, `${name}.log`),
          stateDir: own.stateDir,
        });
        cleanups.push(() => worker.kill());
        return worker;
      };
      const first = await spawnInference('inference-1');
      const detectorUri = pathToFileURL(REFERENCE_DETECTOR_DIR).href;
      const round = await startStage2Round(own.info, client, IMAGES, {
        prefill: { detectorUri, settings: LOOSE },
        heartbeatTimeoutSeconds: 5,
        deadlineSeconds: 60,
      });
      const prefills = `runs/${round.runId}/stage2/prefill/`;
      await waitFor(
        'the first pre-filled image',
        async () => (await keysUnder(round.out, prefills)).length > 0,
        120_000,
        50,
      );
      const before = (await keysUnder(round.out, prefills)).length;
      expect(before).toBeLessThan(IMAGES);
      await first.kill();
      console.log(`killed the inference worker with ${before} of ${IMAGES} images pre-filled`);
      await spawnInference('inference-2');

      const result = await round.handle.result();
      expect(result.published).toBe(IMAGES);
      expect(result.prefill!.problem).toBeUndefined();
      expect(await keysUnder(round.out, prefills)).toHaveLength(IMAGES);
      expect(result.prefill!.masks).toBeGreaterThan(0);
      // Each image's task names as many pre-filled masks as its file holds.
      const file = JSON.parse(
        (await round.out.get(runLayout.stage2Prefill(round.runId, 3))).toString('utf8'),
      );
      const task = await client.workflow
        .getHandle(annotationTaskWorkflowId(round.runId, 1, 3))
        .query(taskStateQuery);
      expect(task.prefill?.masks ?? 0).toBe(file.masks.length);
    },
  );
});
