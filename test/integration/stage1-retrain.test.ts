// A run that retrains during stage 1, end to end on the real stack: the run seeds the registry's
// champion from models.sam, simulated annotators annotate each round through the annotation
// service, the trigger starts a retrain after each round on every mask so far, the Python trainer
// trains a version into the registry, the gate promotes it, and the next round is assisted by it:
// its masks and its SaeModel name the new version. Each promoted version gets its AMG thresholds
// calibrated on the run's held-out images, and stage 3 segments with the last one at those thresholds.
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAnnotationService, startSimulatedAnnotators } from '../../cli/annotation.ts';
import type { Endpoints } from '../../cli/endpoints.ts';
import { startRun } from '../../client/runs.ts';
import { ModelRegistry, registryUri } from '../../lib/models/registry.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { readShardProvenance } from '../../lib/stage1/provenance.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { roundWorkflowId } from '../../workflows/stage1-round.ts';
import { SAE_MODEL } from '../../workflows/search-attributes.ts';
import { spawnTrainerProcess, type WorkerProcess } from '../helpers/processes.ts';
import { REFERENCE_MODEL_URI, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';

const stack = testStack();

/** What the test reads of a version's model.json. */
interface ModelJson {
  amg_calibration: {
    pred_iou_thresh: number;
    stability_score_thresh: number;
    measured_on: string;
    points_per_side: number;
    inherited_from?: string;
  };
}

describe('stage 1 with retraining', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'sae-retrain-run-'));
  const prefix = `stage1-retrain-${randomUUID().slice(0, 8)}`;
  const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  let trainer: WorkerProcess;
  let config: RunConfig;

  beforeAll(async () => {
    const images = openObjectStore(imagesUri, storeOptionsFor(stack));
    await generateSynthDataset({ images: 6, seed: 31, write: (k, b) => images.put(k, Buffer.from(b)) });
    config = createRunConfigSchema().parse({
      run: `test-${prefix}`,
      images: { prefix: `${imagesUri}/images` },
      output: `s3://${stack.s3.bucket}/${prefix}/out`,
      storage: { s3: { endpoint: stack.s3.endpoint, region: stack.s3.region } },
      models: { sam: REFERENCE_MODEL_URI },
      temporal: { address: stack.temporal.address },
      stage1: {
        enabled: true,
        rounds: 2,
        imagesPerRound: 3,
        embedBatch: 3,
        service: { port: 0 },
        // After every round, a few steps on its masks; the gate lets any candidate through, so the
        // next round must be assisted by the new version.
        retrain: {
          enabled: true,
          minNewMasks: 1,
          waitForRetrain: true,
          mode: 'decoder',
          steps: 2,
          batchSize: 1,
          masksPerImage: 1,
          numPoints: 1,
          minGain: -1,
          maxNoc90Loss: 100,
          holdoutFraction: 0.4,
          maxEvalImages: 1,
          calibration: { maxImages: 1, pointsPerSide: 4 },
        },
      },
      simulatedAnnotators: {
        enabled: true,
        count: 2,
        intent: { format: 'coco', uri: `${imagesUri}/${ANNOTATIONS_KEY}` },
        maxClicks: 3,
        minArea: 400,
        maxMasksPerImage: 3,
      },
      stage3: { enabled: true, thresholds: 'model', pointsPerSide: 4 },
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
    'retrains after each round and the next round uses the promoted version',
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

        // Round 1 was assisted by the champion seeded from models.sam (v1), round 2 by v2.
        expect(result.stage1!.map((r) => Object.keys(r.summary.models))).toEqual([['sam@v1'], ['sam@v2']]);
        expect(result.retrains!.map((r) => [r.error, r.result?.version, r.result?.promoted])).toEqual([
          [undefined, 2, true],
          [undefined, 3, true],
        ]);
        // Every promoted version carries its own thresholds, measured before it completed: its
        // lineage records the model.json that holds them.
        const registryStore = openObjectStore(registryUri(config), storeOptionsFor(stack));
        for (const [i, version] of [2, 3].entries()) {
          const text = (await registryStore.get(`sam/v${version}/model.json`)).toString('utf8');
          const calibrationOf = async (v: number) =>
            (JSON.parse((await registryStore.get(`sam/v${v}/model.json`)).toString('utf8')) as ModelJson)
              .amg_calibration;
          const calibration = await calibrationOf(version);
          expect(calibration.points_per_side).toBe(4);
          expect(calibration.measured_on).toMatch(
            /^1 held-out images of .*\/stage1\/training\/set-\d\/manifest\.json/,
          );
          const inherited = calibration.inherited_from;
          if (inherited !== undefined) {
            // One held-out image at 4×4 points may give no pair a correct mask: the parent's pair.
            const parent = await calibrationOf(version - 1);
            expect(inherited).toBe(`sam v${version - 1}`);
            expect([calibration.pred_iou_thresh, calibration.stability_score_thresh]).toEqual([
              parent.pred_iou_thresh,
              parent.stability_score_thresh,
            ]);
          }
          expect(result.retrains![i]!.result?.amgCalibration).toEqual({
            predIouThresh: calibration.pred_iou_thresh,
            stabilityScoreThresh: calibration.stability_score_thresh,
            ...(inherited !== undefined ? { inheritedFrom: inherited } : {}),
          });
          const recorded = (await new ModelRegistry(registryStore).lineage('sam', version)).files.find(
            (f) => f.name === 'model.json',
          );
          expect(recorded?.sha256).toBe(createHash('sha256').update(text).digest('hex'));
        }
        // Stage 3 segmented every image with the last champion, at its thresholds.
        expect(result.stage3Model).toBe('sam@v3');
        expect(result.stage3).toMatchObject({ images: 6, imagesDone: 6, imagesFailed: 0 });
        expect(result.retrains![0]!.trigger).toMatch(
          /^stage 1 after round 1: \d+ new masks in the run \(≥ 1\)$/,
        );

        const registry = new ModelRegistry(openObjectStore(registryUri(config), storeOptionsFor(stack)));
        expect(await registry.resolve('sam', 'champion')).toBe(3);
        const v3 = await registry.lineage('sam', 3);
        expect(v3).toMatchObject({ parent: { name: 'sam', version: 2 }, gate: { promoted: true } });
        expect(v3.trainingSet?.uri).toContain('/stage1/training/set-2/manifest.json');
        expect((await registry.lineage('sam', 1)).trigger).toBe(
          `seeded from ${REFERENCE_MODEL_URI} by run ${config.run}`,
        );

        const round2 = await client.workflow.getHandle(roundWorkflowId(config.run, 2)).describe();
        expect(round2.typedSearchAttributes.get(SAE_MODEL)).toBe('sam@v2');
        // The dataset manifest's provenance names the version that assisted each mask.
        const out = openObjectStore(config.output, storeOptionsFor(stack));
        const models = new Set<string>();
        for (const masks of (await readShardProvenance(out, config.run, 0)).values()) {
          for (const m of masks) models.add(`${m.round}:${m.model}`);
        }
        expect([...models].sort()).toEqual(['1:sam@v1', '2:sam@v2']);
      } finally {
        over = true;
        await service.close();
      }
    },
  );
});
