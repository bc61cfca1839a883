// Stage 1 when things break underneath a round: the inference worker SIGKILLed while it embeds,
// the annotation service restarted mid-round, the Temporal server restarted mid-round. In each,
// simulated annotators work through the HTTP API; the round must complete with every mask they
// were told was accepted in storage exactly once. Cases that restart a server run on a stack of
// their own.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { AnnotationApi } from '../../client/annotation-api.ts';
import { runSimulatedAnnotator, type SimulatedAnnotatorResult } from '../../client/simulated-annotators.ts';
import type { StackInfo } from '../../infra/stack-info.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import type { ObjectStore } from '../../lib/object-store.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { openIntent } from '../../lib/stage1/intent.ts';
import { DEFAULT_ANNOTATOR } from '../../lib/stage1/simulated-annotator.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { createAnnotationService } from '../../service/annotation-service.ts';
import { AnnotatorAccounts } from '../../service/annotators.ts';
import { annotationRound, roundWorkflowId, type RoundResult } from '../../workflows/stage1-round.ts';
import { connectClient, restartTemporal, startOwnStack, type Cleanups } from '../helpers/own-stack.ts';
import { spawnWorkerProcess } from '../helpers/processes.ts';
import { REFERENCE_MODEL_URI, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { testRoundSpec } from '../helpers/stage1-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const IMAGES = 4;
const CASE_TIMEOUT_MS = 300_000;
const cleanups: Cleanups = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch((err) => console.warn('cleanup:', err));
});

/** A round over synthetic images on `stack`, its service, and what the annotators need. */
async function openRound(stack: StackInfo, client: Client, embedBatch: number) {
  const stores = new StoreCache(storeOptionsFor(stack));
  const prefix = `stage1-faults-${randomUUID().slice(0, 8)}`;
  const runId = `test-${prefix}`;
  const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
  const outputUri = `s3://${stack.s3.bucket}/${prefix}/out`;
  const images = stores.open(imagesUri);
  await generateSynthDataset({
    images: IMAGES,
    seed: 41,
    write: (key, bytes) => images.put(key, Buffer.from(bytes)),
  });
  const handle = await client.workflow.start(annotationRound, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: roundWorkflowId(runId, 1),
    args: [
      testRoundSpec(
        { runId, outputUri, imagesUri, round: 1, imageCount: IMAGES },
        // A killed worker's batch is retried within seconds.
        { embedBatch, leaseSeconds: 60, heartbeatTimeoutSeconds: 5 },
      ),
    ],
  });
  const out = stores.open(outputUri);
  const accounts = new AnnotatorAccounts(out);
  return { runId, outputUri, out, stores, handle, accounts, intentUri: `${imagesUri}/${ANNOTATIONS_KEY}` };
}

type Round = Awaited<ReturnType<typeof openRound>>;

async function startService(round: Round, client: Client, port = 0): Promise<FastifyInstance> {
  const app = await createAnnotationService({
    client,
    runId: round.runId,
    outputUri: round.outputUri,
    stores: round.stores,
    accounts: round.accounts,
    modelDir: fileURLToPath(REFERENCE_MODEL_URI),
  });
  await app.listen({ host: '127.0.0.1', port });
  return app;
}

/** Two simulated annotators until the round is closed; resolves with their tallies and the round's result. */
async function annotate(
  round: Round,
  url: string,
): Promise<{ sims: SimulatedAnnotatorResult[]; result: RoundResult }> {
  const session = await SamSession.load(fileURLToPath(REFERENCE_MODEL_URI));
  const intent = await openIntent(round.stores, { format: 'coco', uri: round.intentUri, ignoreValue: null });
  let closed = false;
  const result = round.handle.result().finally(() => (closed = true));
  const sims = await Promise.all(
    ['sim-a', 'sim-b'].map(async (name, index) =>
      runSimulatedAnnotator({
        api: new AnnotationApi(url, await round.accounts.add(name)),
        index,
        sessionFor: async () => session,
        intent,
        model: { ...DEFAULT_ANNOTATOR, maxClicks: 2, minArea: 400 },
        maxMasksPerImage: 2,
        idleMs: 300,
        stop: () => closed,
      }),
    ),
  );
  return { sims, result: await result };
}

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.listKeys(prefix)) keys.push(key);
  return keys;
}

/** The round completed, every image annotated, and each acknowledged mask stored once. */
async function expectEveryMaskOnce(round: Round, sims: SimulatedAnnotatorResult[], result: RoundResult) {
  expect(result.closedBy).toBe('done');
  expect(result.published).toBe(IMAGES);
  const acknowledged = sims.reduce((s, r) => s + r.masks, 0);
  expect(acknowledged).toBeGreaterThan(0);
  expect(await keysUnder(round.out, runLayout.stage1AnnotationsPrefix(round.runId, 1))).toHaveLength(
    acknowledged,
  );
  expect(result.summary.masks).toBe(acknowledged);
}

describe('a stage-1 round survives its platform failing', () => {
  it(
    'the inference worker SIGKILLed while embedding: the batch is retried on a new worker',
    async () => {
      const own = await startOwnStack(cleanups, 'sae-stage1-faults-');
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
      const round = await openRound(own.info, client, IMAGES); // one batch: the kill lands inside it
      const embeddings = runLayout.embedding(round.runId, 0).replace(/0\.bin$/, '');
      await waitFor(
        'the first embedding of the batch',
        async () => (await keysUnder(round.out, embeddings)).length > 0,
        120_000,
        50,
      );
      expect((await keysUnder(round.out, embeddings)).length).toBeLessThan(IMAGES);
      await first.kill();
      await spawnInference('inference-2');

      const service = await startService(round, client);
      cleanups.push(() => service.close());
      const { sims, result } = await annotate(round, `http://127.0.0.1:${port(service)}`);
      await expectEveryMaskOnce(round, sims, result);
    },
    CASE_TIMEOUT_MS,
  );

  /** A round on a stack of its own, annotated through the service, until its first mask is stored. */
  async function annotateOnOwnStack() {
    const own = await startOwnStack(cleanups, 'sae-stage1-faults-');
    const client = await connectClient(own.info, cleanups);
    const workers = await startTestWorkers(own.info);
    cleanups.push(() => workers.shutdown());
    const round = await openRound(own.info, client, 2);
    const app = await startService(round, client);
    const service = { app, port: port(app) };
    cleanups.push(() => service.app.close());
    const annotating = annotate(round, `http://127.0.0.1:${service.port}`);
    await waitFor(
      'the first accepted mask',
      async () => (await keysUnder(round.out, runLayout.stage1AnnotationsPrefix(round.runId, 1))).length > 0,
    );
    return { own, client, round, service, annotating };
  }

  it(
    'the annotation service restarted mid-round: the annotators retry and go on',
    async () => {
      const { client, round, service, annotating } = await annotateOnOwnStack();
      await service.app.close();
      await new Promise((r) => setTimeout(r, 2000)); // annotators find nobody there for a while
      service.app = await startService(round, client, service.port);
      const { sims, result } = await annotating;
      await expectEveryMaskOnce(round, sims, result);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'the Temporal server restarted mid-round: the round resumes and completes',
    async () => {
      const { own, round, annotating } = await annotateOnOwnStack();
      await restartTemporal(own);
      const { sims, result } = await annotating;
      await expectEveryMaskOnce(round, sims, result);
    },
    CASE_TIMEOUT_MS,
  );
});

function port(app: FastifyInstance): number {
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('the service is not listening on a port');
  return address.port;
}
