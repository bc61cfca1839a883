// stage3.thresholds end to end on the real dev stack, with the committed reference model: the
// official thresholds (0.88, 0.95) keep none of sae-ref's masks; `thresholds: model` runs with the
// calibration in its model.json, writes masks that passed exactly those thresholds, and audits
// them against the synthetic ground truth (what `sa-engine demo` does); a package without a
// calibration fails the run with an error naming both fields.
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun } from '../../client/run-status.ts';
import { startRun } from '../../client/runs.ts';
import { readModelPackage, type AmgCalibration } from '../../lib/sam/model-package.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { testStack } from '../helpers/stack.ts';
import {
  REFERENCE_MODEL_URI,
  startTestWorkers,
  storeOptionsFor,
  writeStage3Images,
  type Stage3Fixture,
} from '../helpers/stage3-fixture.ts';

const stack = testStack();
const MODEL_DIR = resolve(import.meta.dirname, '../../models/sae-ref');
const IMAGES = 3;

interface Sa1bFile {
  annotations: { predicted_iou: number; stability_score: number }[];
}

describe('stage3.thresholds', () => {
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  let fixture: Stage3Fixture;
  let calibration: AmgCalibration;
  let uncalibrated: string;

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    workers = await startTestWorkers(stack);
    fixture = await writeStage3Images(stack, IMAGES);
    // The same images' ground truth (writeStage3Images keeps only the images), next to images/.
    const root = openObjectStore(`s3://${stack.s3.bucket}/${fixture.prefix}`, storeOptionsFor(stack));
    await generateSynthDataset({
      images: IMAGES,
      seed: 11,
      write: (key, bytes) =>
        key === ANNOTATIONS_KEY ? root.put(key, Buffer.from(bytes)) : Promise.resolve(),
    });
    calibration = (await readModelPackage(MODEL_DIR)).amgCalibration!;
    // The reference package without its calibration: its model.json minus amg_calibration, the
    // ONNX files linked.
    uncalibrated = await mkdtemp(join(tmpdir(), 'sae-uncalibrated-'));
    const json = JSON.parse(await readFile(join(MODEL_DIR, 'model.json'), 'utf8')) as Record<string, unknown>;
    delete json.amg_calibration;
    json.name = 'sae-ref-uncalibrated';
    await writeFile(join(uncalibrated, 'model.json'), JSON.stringify(json));
    for (const file of [
      'encoder.onnx',
      'decoder.onnx',
      'decoder_batched.onnx',
      'decoder_folded.onnx',
      'decoder_weights.bin',
    ])
      await symlink(join(MODEL_DIR, file), join(uncalibrated, file));
  });

  afterAll(async () => {
    await workers?.shutdown();
    await connection?.close();
    if (uncalibrated) await rm(uncalibrated, { recursive: true, force: true });
  });

  function config(
    run: string,
    stage3: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ): RunConfig {
    return createRunConfigSchema().parse({
      run: `test-${fixture.prefix}-${run}`,
      images: { prefix: fixture.imagesUri },
      output: fixture.outputUri,
      storage: { s3: { endpoint: stack.s3.endpoint, region: stack.s3.region } },
      models: { sam: REFERENCE_MODEL_URI },
      temporal: { address: stack.temporal.address },
      // The calibration's grid is 16×16; 4×4 keeps each image to a few seconds on 2 CPU cores.
      stage3: { pointsPerSide: 4, shardSize: 3, batchImages: 2, ...stage3 },
      ...extra,
    });
  }

  async function maskFiles(run: RunConfig): Promise<Sa1bFile[]> {
    const files: Sa1bFile[] = [];
    for (let id = 0; id < IMAGES; id++)
      files.push(
        JSON.parse((await fixture.out.get(runLayout.masks(run.run, id))).toString('utf8')) as Sa1bFile,
      );
    return files;
  }

  it('official: sae-ref passes none of its masks', async () => {
    const run = config('official', {});
    const result = await (await startRun(client, run)).result();
    expect(result.stage3).toMatchObject({ imagesDone: IMAGES, masks: 0 });
  });

  it("model: the package's calibrated thresholds give masks, audited against the ground truth", async () => {
    const run = config(
      'model',
      { thresholds: 'model' },
      {
        audit: {
          enabled: true,
          reference: { uri: `s3://${stack.s3.bucket}/${fixture.prefix}/${ANNOTATIONS_KEY}`, format: 'coco' },
        },
      },
    );
    expect(run.stage3).toMatchObject({
      thresholds: 'model',
      predIouThresh: null,
      stabilityScoreThresh: null,
    });
    const result = await (await startRun(client, run)).result();
    expect(result.stage3!.imagesDone).toBe(IMAGES);
    expect(result.stage3!.masks).toBeGreaterThan(0);
    // Every mask passed the calibrated filters; none would have passed the official ones.
    const annotations = (await maskFiles(run)).flatMap((f) => f.annotations);
    expect(annotations).toHaveLength(result.stage3!.masks);
    for (const a of annotations) {
      expect(Math.fround(a.predicted_iou)).toBeGreaterThan(Math.fround(calibration.predIouThresh));
      expect(Math.fround(a.stability_score)).toBeGreaterThanOrEqual(
        Math.fround(calibration.stabilityScoreThresh),
      );
    }
    expect(annotations.some((a) => a.predicted_iou > 0.88 && a.stability_score >= 0.95)).toBe(false);
    // The audit compared them with the synthetic ground truth.
    expect(result.audit).toMatchObject({ imagesAudited: IMAGES, automaticMasks: result.stage3!.masks });
    expect(result.audit!.humanMasks).toBeGreaterThan(0);
    expect(result.audit!.meanIou).toBeGreaterThan(0);
    expect(await fixture.out.exists(result.audit!.reportJsonKey)).toBe(true);
  });

  it('model, on a package without a calibration: the run fails, naming stage3.thresholds and amg_calibration', async () => {
    const run = { ...config('uncalibrated', { thresholds: 'model' }) };
    run.models = { ...run.models, sam: pathToFileURL(uncalibrated).href };
    await expect((await startRun(client, run)).result()).rejects.toThrow();
    const status = (await describeRun(client, run.run)).join('\n');
    expect(status).toContain('FAILED');
    expect(status).toMatch(
      /stage3\.thresholds is "model", but the model package sae-ref-uncalibrated .* has no amg_calibration/,
    );
  });
});
