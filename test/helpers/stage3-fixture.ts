// A small stage-3 run on the real dev stack: synthetic images (plus broken files) in the S3 server,
// a config over them with the committed reference model, and in-process workers. Shared by the
// stage-3 integration suites.
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { createSegmenterFactory } from '../../lib/stage3/segmenter.ts';
import { readShardEntries } from '../../lib/stage3/shard-plan.ts';
import { readShardResult } from '../../lib/stage3/shard-runner.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { startWorkers, type RunningWorkers } from '../../workers/run-workers.ts';
import { WORKFLOWS_PATH } from '../../workers/create-worker.ts';
import { storeOptionsFor } from './stack.ts';
import type { StackInfo } from '../../infra/stack-info.ts';

// Workers log every state change at INFO; tests keep warnings and errors only.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // already installed by another suite in this process
}

export { storeOptionsFor };

export const REFERENCE_MODEL_URI = pathToFileURL(resolve(import.meta.dirname, '../../models/sae-ref')).href;

export interface Stage3Fixture {
  prefix: string;
  imagesUri: string;
  outputUri: string;
  images: ObjectStore;
  out: ObjectStore;
  goodImages: number;
  brokenImages: string[];
}

/** `goodImages` synthetic images and the given broken files under a fresh prefix of the bucket. */
export async function writeStage3Images(
  stack: StackInfo,
  goodImages: number,
  broken: Record<string, Buffer> = {},
): Promise<Stage3Fixture> {
  const prefix = `stage3-${randomUUID().slice(0, 8)}`;
  const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
  const outputUri = `s3://${stack.s3.bucket}/${prefix}/out`;
  const images = openObjectStore(imagesUri, storeOptionsFor(stack));
  // Small scenes keep the AMG quick on a CPU while still holding several objects each.
  await generateSynthDataset({
    images: goodImages,
    seed: 11,
    scene: undefined,
    write: (key, bytes) =>
      key.startsWith('images/')
        ? images.put(key.slice('images/'.length), Buffer.from(bytes))
        : Promise.resolve(),
  });
  for (const [name, bytes] of Object.entries(broken)) await images.put(name, bytes);
  return {
    prefix,
    imagesUri,
    outputUri,
    images,
    out: openObjectStore(outputUri, storeOptionsFor(stack)),
    goodImages,
    brokenImages: Object.keys(broken),
  };
}

export function stage3Config(
  fixture: Stage3Fixture,
  stack: StackInfo,
  overrides: Record<string, unknown> = {},
): RunConfig {
  return createRunConfigSchema().parse({
    run: `test-${fixture.prefix}`,
    images: { prefix: fixture.imagesUri },
    output: fixture.outputUri,
    storage: { s3: { endpoint: stack.s3.endpoint, region: stack.s3.region } },
    models: { sam: REFERENCE_MODEL_URI },
    temporal: { address: stack.temporal.address },
    // A coarse grid keeps each image to a few seconds on 2 CPU cores.
    stage3: { pointsPerSide: 4, shardSize: 3, maxConcurrentShards: 2, batchImages: 2, ...overrides },
  });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** One workflow bundle per test process: bundling takes seconds. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger });
  return bundle;
}

const quietLogger = {
  log: () => {},
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};

export async function startTestWorkers(
  stack: StackInfo,
  queues: string[] = [TASK_QUEUES.orchestration, TASK_QUEUES.inference],
): Promise<RunningWorkers> {
  const storeOptions = storeOptionsFor(stack);
  return startWorkers({
    address: stack.temporal.address,
    namespace: stack.temporal.namespace,
    queues,
    storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions }),
    workflowBundle: await workflowBundle(),
  });
}

/** Every key under a prefix of a store, in listing order. */
export async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.listKeys(prefix)) keys.push(key);
  return keys;
}

/** A batch of the shard is on storage and the shard is not finished: the run is mid-shard. */
export async function midShard(fixture: Stage3Fixture, runId: string, shard = 0): Promise<boolean> {
  const parts = await keysUnder(fixture.out, runLayout.shardPartsPrefix(runId, shard));
  return parts.length > 0 && !(await fixture.out.exists(runLayout.shardResult(runId, shard)));
}

/**
 * Nothing lost, nothing twice: every shard's result manifest has exactly one line per manifest
 * entry, in order, no part files are left, and there is one SA-1B file per image.
 */
export async function expectEveryImageExactlyOnce(
  fixture: Stage3Fixture,
  runId: string,
  shards: number,
): Promise<void> {
  const imageIds: number[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const entries = await readShardEntries(fixture.out, runId, shard);
    const lines = (await readShardResult(fixture.out, runId, shard)) ?? [];
    expect(lines.map((l) => l.id)).toEqual(entries.map((e) => e.id));
    expect(lines.every((l) => l.status === 'done')).toBe(true);
    expect(await keysUnder(fixture.out, runLayout.shardPartsPrefix(runId, shard))).toEqual([]);
    imageIds.push(...entries.map((e) => e.id));
  }
  expect(imageIds).toHaveLength(fixture.goodImages);
  const masks = await keysUnder(fixture.out, runLayout.masksPrefix(runId));
  expect(masks.sort()).toEqual(imageIds.map((id) => runLayout.masks(runId, id)).sort());
}
