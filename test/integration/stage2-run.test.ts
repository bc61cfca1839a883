// Stage 2 end to end on the real stack: a run with stages 1 and 2 and simulated annotators
// annotates a stage-1 round through the annotation service, trains the box detector on its masks
// in the Python trainer, and runs two stage-2 rounds with a detector retrain between them. Each
// stage-2 image arrives pre-filled with the masks SAM draws from the detector's boxes; the
// simulated annotators delete the pre-filled masks that match none of their objects (kept as
// rejected) and label only what no kept mask covers; the kept ones join the round's annotations.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAnnotationService, startSimulatedAnnotators } from '../../cli/annotation.ts';
import type { Endpoints } from '../../cli/endpoints.ts';
import { describeRun } from '../../client/run-status.ts';
import { startRun } from '../../client/runs.ts';
import { ModelRegistry, registryUri } from '../../lib/models/registry.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { readRoundAnnotations } from '../../lib/stage1/round-export.ts';
import { readPrefill } from '../../lib/stage2/prefill-store.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { roundWorkflowId } from '../../workflows/stage1-round.ts';
import { SAE_MODEL, SAE_STAGE } from '../../workflows/search-attributes.ts';
import { spawnTrainerProcess, type WorkerProcess } from '../helpers/processes.ts';
import { REFERENCE_MODEL_URI, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';

const stack = testStack();

describe('stage 2: semi-automatic rounds', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sae-stage2-run-'));
  const prefix = `stage2-${randomUUID().slice(0, 8)}`;
  const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  let trainer: WorkerProcess;
  let config: RunConfig;

  beforeAll(async () => {
    const images = openObjectStore(imagesUri, storeOptionsFor(stack));
    await generateSynthDataset({ images: 8, seed: 41, write: (k, b) => images.put(k, Buffer.from(b)) });
    config = createRunConfigSchema().parse({
      run: `test-${prefix}`,
      images: { prefix: `${imagesUri}/images` },
      output: `s3://${stack.s3.bucket}/${prefix}/out`,
      storage: { s3: { endpoint: stack.s3.endpoint, region: stack.s3.region } },
      models: { sam: REFERENCE_MODEL_URI },
      temporal: { address: stack.temporal.address },
      stage1: { enabled: true, rounds: 1, imagesPerRound: 4, embedBatch: 4, service: { port: 0 } },
      stage2: {
        enabled: true,
        rounds: 2,
        imagesPerRound: 2,
        // A detector of a few steps scores low: take its best boxes whatever their score, and
        // every mask SAM draws from their centres (the reference SAM was never trained on boxes).
        detector: { scoreThreshold: 0, maxDetections: 6 },
        prefill: { prompt: 'centre-point', predIouThresh: 0, stabilityScoreThresh: 0 },
        // Ids 0 and 2 of stage 1 (and 5 later) are held out: both sets have boxes.
        retrain: { steps: 3, batchSize: 2, minGain: -1, holdoutFraction: 0.3, maxEvalImages: 4 },
      },
      simulatedAnnotators: {
        enabled: true,
        count: 2,
        intent: { format: 'coco', uri: `${imagesUri}/${ANNOTATIONS_KEY}` },
        maxClicks: 3,
        minArea: 400,
        maxMasksPerImage: 4,
      },
      stage3: { enabled: false },
    });
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration, TASK_QUEUES.inference]);
    trainer = await spawnTrainerProcess(stack, { logFile: join(stateDir, 'trainer.log'), stateDir });
  }, 180_000);

  afterAll(async () => {
    await trainer?.kill();
    await workers?.shutdown();
    await connection?.close();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it(
    'trains the detector on stage 1, pre-fills two stage-2 rounds and retrains the detector between them',
    { timeout: 900_000 },
    async () => {
      const endpoints: Endpoints = {
        address: stack.temporal.address,
        namespace: stack.temporal.namespace,
        uiUrl: undefined,
        storeOptions: storeOptionsFor(stack),
      };
      const service = await startAnnotationService(config, endpoints, client);
      let over = false;
      try {
        const handle = await startRun(client, config);
        const sims = startSimulatedAnnotators(config, endpoints, service, () => over);
        const result = await handle.result().finally(() => (over = true));
        await sims;

        // The detector trained before stage 2 (v1, on round 1) and between its rounds (v2, on 1 and 2).
        const retrains = result.stage2!.detectorRetrains;
        expect(retrains.map((r) => [r.workflowId, r.error, r.result?.version, r.result?.promoted])).toEqual([
          [`${config.run}/detector-retrain-1`, undefined, 1, true],
          [`${config.run}/detector-retrain-2`, undefined, 2, true],
        ]);
        expect(retrains.map((r) => r.sam)).toEqual(['sam/v1', 'sam/v1']);
        expect(retrains[1]!.trigger).toBe('stage 2 after round 2: the masks of rounds 1, 2');
        for (const r of retrains) expect(r.result!.AP).toBeGreaterThanOrEqual(0);
        const registry = new ModelRegistry(openObjectStore(registryUri(config), storeOptionsFor(stack)));
        expect(await registry.resolve('detector', 'champion')).toBe(2);

        const [round2, round3] = result.stage2!.rounds;
        expect([round2!.round, round3!.round]).toEqual([2, 3]);
        expect(round2!.prefill).toMatchObject({ detector: 'detector@v1' });
        expect(round3!.prefill).toMatchObject({ detector: 'detector@v2' });

        const out = openObjectStore(config.output, storeOptionsFor(stack));
        for (const round of [round2!, round3!]) {
          expect(round.prefill!.problem).toBeUndefined();
          expect(round.prefill!.masks).toBeGreaterThan(0);
          // Every pre-filled mask is either kept as an annotation or kept as rejected.
          const { prefilled, added } = round.summary;
          expect(prefilled.masks + prefilled.rejected).toBe(round.prefill!.masks);
          const records = await readRoundAnnotations(out, config.run, round.round);
          const kept = records.filter((r) => r.prefilled);
          expect(kept).toHaveLength(prefilled.masks);
          expect(records.length - kept.length).toBe(added.masks);
          for (const r of kept) {
            expect(r).toMatchObject({
              annotator: round.prefill!.detector && `detector:${round.prefill!.detector}`,
              seconds: 0,
            });
            const file = await readPrefill(out, runLayout.stage2Prefill(config.run, r.imageId));
            expect(file!.masks[Number(r.submissionId.slice('prefill-'.length))]!.segmentation).toEqual(
              r.mask,
            );
          }
          let rejected = 0;
          for await (const key of out.listKeys(runLayout.stage2RejectionsPrefix(config.run, round.round))) {
            const record = JSON.parse((await out.get(key)).toString('utf8'));
            expect(record.reason).toMatch(/matches none of the objects/);
            rejected += 1;
          }
          expect(rejected).toBe(prefilled.rejected);
        }
        // Pre-filled or not, people's seconds per mask are for the masks they added.
        expect(round2!.summary.secondsPerMask.median ?? 0).toBeGreaterThanOrEqual(0);

        const described = await client.workflow
          .getHandle(roundWorkflowId(config.run, 3, 'stage2'))
          .describe();
        expect(described.typedSearchAttributes.get(SAE_STAGE)).toBe('stage2');
        expect(described.typedSearchAttributes.get(SAE_MODEL)).toBe('sam@v1 + detector@v2');

        const status = (await describeRun(client, config.run)).join('\n');
        console.log(status);
        expect(status).toContain('SAM sam@v1, detector detector@v2');
        expect(status).toMatch(/detector test-.*\/detector-retrain-2: v2 box AP/);
      } finally {
        over = true;
        await service.close();
      }
    },
  );
});
