// Re-records the workflow histories that test/integration/workflow-replay.test.ts replays against
// the current workflow code. Record them again on purpose only: a history recorded by released
// code is what proves that new code can still replay the runs that code started.
//
//   npx sa-engine dev up                      # a local Temporal dev server and S3 server
//   npx tsx scripts/record-histories.ts       # writes test/fixtures/histories/*.json
//   npx sa-engine dev down
//
// Stop any other `sa-engine worker` on that stack first: the histories must come from this checkout.
// The script runs its own workers in-process, a small stage-3 run (3 images, one per shard, with
// continue-as-new after every 2 shards, and an audit against the images' synthetic ground truth),
// runs that end otherwise (stage 3 failing on a broken model package, a run cancelled mid-stage-3,
// a run with stage 3 off and nothing to build on), a dry run, a storage check, and a retrainSam and
// a retrainDetector whose training activities are stand-ins served by this script (the workflow's history is the
// same whatever computes the activities; the Python trainer is not needed), then writes each
// workflow's history as JSON.
// Options: --out DIR (default test/fixtures/histories), --state-dir DIR (the `dev up` state folder),
// --only NAME,... (write only these histories, e.g. new ones, and keep the others as recorded).
// --save WORKFLOW_ID=NAME,... records nothing: it writes the histories of workflows that already
// ran on that stack (e.g. `npx sa-engine demo`'s whole-engine run, which needs the real trainer
// and annotators) under those names.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, WorkflowIdReusePolicy, type WorkflowHandle } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type {
  EvaluateDetectorResult,
  EvaluateSamResult,
  TrainingActivities,
} from '../activities/training.ts';
import type { RunConfig } from '../lib/run-config.ts';
import prettier from 'prettier';
import { defaultStateDir, readDevState } from '../infra/dev-state.ts';
import type { StackInfo } from '../infra/stack-info.ts';
import { openObjectStore, type ObjectStoreOptions } from '../lib/object-store.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { datasetRunInput } from '../lib/run-input.ts';
import { createSegmenterFactory } from '../lib/stage3/segmenter.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { startWorkers } from '../workers/run-workers.ts';
import { auditWorkflowId } from '../workflows/audit.ts';
import { datasetWorkflowId } from '../workflows/dataset-build.ts';
import { shardWorkflowId } from '../workflows/stage3.ts';
import { datasetRun, runProgressQuery, stage3WorkflowId } from '../workflows/dataset-run.ts';
import { dryRun, dryRunWorkflowId } from '../workflows/dry-run.ts';
import { annotationTask } from '../workflows/stage1-task.ts';
import {
  annotationTaskWorkflowId,
  claimTaskUpdate,
  finishTaskUpdate,
  rejectPrefillUpdate,
  submitMaskUpdate,
  taskStateQuery,
} from '../lib/stage1/task-messages.ts';
import { compressRle, encodeMask } from '../lib/rle.ts';
import { retrainDetector } from '../workflows/retrain-detector.ts';
import { retrainSam } from '../workflows/retrain.ts';
import { annotationRound, roundWorkflowId } from '../workflows/stage1-round.ts';
import { claimFirst, freeTaskIds } from '../lib/stage1/round-tasks.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from '../workflows/search-attributes.ts';
import { storageCheck } from '../workflows/storage-check.ts';

const REPO = resolve(import.meta.dirname, '..');
const MODEL_URI = pathToFileURL(join(REPO, 'models/sae-ref')).href;
const DETECTOR_URI = pathToFileURL(join(REPO, 'models/sae-det')).href;
const IMAGES = 3;
/** With one image per shard, the stage continues as new once, after shard 2 of 3. */
const SHARDS_PER_WORKFLOW_RUN = 2;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(REPO, 'test/fixtures/histories') },
      'state-dir': { type: 'string', default: defaultStateDir() },
      only: { type: 'string' },
      save: { type: 'string' },
    },
  });
  const only = values.only?.split(',').filter(Boolean);
  const stack = readDevState(values['state-dir'])?.info;
  if (!stack)
    throw new Error(`no dev stack recorded in ${values['state-dir']}; run \`npx sa-engine dev up\``);
  Runtime.install({ logger: new DefaultLogger('WARN') });

  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace });
  if (values.save) {
    await saveHistories(client, values.save, values.out);
    return connection.close();
  }
  const storeOptions = storeOptionsFor(stack);
  const workerOptions = (queues: string[]) => ({
    address: stack.temporal.address,
    namespace: stack.temporal.namespace,
    queues,
    storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions }),
  });
  const workers = await startWorkers(workerOptions([TASK_QUEUES.orchestration]));
  const inference = await startWorkers(workerOptions([TASK_QUEUES.inference]));
  const training = await startStandInTrainer(stack);
  try {
    const runId = `replay-${Date.now().toString(36)}`;
    const histories: Record<string, History> = {
      ...(await recordDatasetRun(client, stack, runId)),
      'dataset-run-stage3-failed': await recordFailedRun(client, stack, `${runId}-failed`),
      'dataset-run-no-stage3': await recordRunWithoutStage3(client, stack, `${runId}-no-stage3`),
      ...(await recordDryRun(client, stack, `${runId}-dry`)),
      'storage-check': await recordStorageCheck(client, stack, runId),
      'retrain-sam': await recordRetrain(client, runId),
      'retrain-detector': await recordRetrainDetector(client, runId),
      'annotation-task': await recordAnnotationTask(client, stack, runId),
      'annotation-round': await recordAnnotationRound(client, stack, `${runId}-round`),
      ...(await recordPrefilledRound(client, stack, `${runId}-stage2`)),
    };
    // Without an inference worker, the shards of the next run wait: it is surely mid-stage-3.
    await inference.shutdown();
    if (!only || only.includes('dataset-run-cancelled'))
      histories['dataset-run-cancelled'] = await recordCancelledRun(client, stack, `${runId}-cancelled`);
    mkdirSync(values.out, { recursive: true });
    for (const [name, history] of Object.entries(histories)) {
      if (only && !only.includes(name)) continue;
      const file = join(values.out, `${name}.json`);
      writeFileSync(file, await formatJson(file, history));
      console.log(`wrote ${file} (${history.events?.length ?? 0} events)`);
    }
  } finally {
    await training.shutdown();
    await inference.shutdown().catch(() => {});
    await workers.shutdown();
    await connection.close();
  }
}

function storeOptionsFor(stack: StackInfo): ObjectStoreOptions {
  const { endpoint, region, accessKeyId, secretAccessKey } = stack.s3;
  return { s3: { endpoint, region, accessKeyId, secretAccessKey, forcePathStyle: true } };
}

/** A dataset run with stage 3 and the audit; returns the histories of every workflow it ran. */
async function recordDatasetRun(
  client: Client,
  stack: StackInfo,
  runId: string,
): Promise<Record<string, History>> {
  const config = await smallRun(stack, runId, {
    audit: {
      enabled: true,
      reference: { uri: `${runRoot(stack, runId)}/${ANNOTATIONS_KEY}`, format: 'coco' },
    },
  });
  const handle = await startDatasetRun(client, config);
  await handle.result();

  const runHistory = await handle.fetchHistory();
  const [continued, finalRun] = await continueAsNewChain(client, stage3WorkflowId(runId), runHistory);
  return {
    'dataset-run': runHistory,
    'automatic-stage-continued-as-new': continued!,
    'automatic-stage-final-run': finalRun!,
    'automatic-shard': await client.workflow.getHandle(shardWorkflowId(runId, 0)).fetchHistory(),
    'dataset-build': await client.workflow.getHandle(datasetWorkflowId(runId)).fetchHistory(),
    'audit-stage': await client.workflow.getHandle(auditWorkflowId(runId)).fetchHistory(),
  };
}

function runRoot(stack: StackInfo, runId: string): string {
  return `s3://${stack.s3.bucket}/${runId}`;
}

/** The synthetic images in the S3 server and a config over them, with `more` settings on top. */
async function smallRun(
  stack: StackInfo,
  runId: string,
  more: Record<string, unknown> = {},
): Promise<RunConfig> {
  const root = runRoot(stack, runId);
  const store = openObjectStore(root, storeOptionsFor(stack));
  await generateSynthDataset({
    images: IMAGES,
    seed: 5,
    write: (key, bytes) => store.put(key, Buffer.from(bytes)),
  });
  return createRunConfigSchema().parse({
    run: runId,
    images: { prefix: `${root}/images` },
    output: `${root}/out`,
    storage: { s3: { endpoint: stack.s3.endpoint, region: stack.s3.region } },
    models: { sam: MODEL_URI },
    temporal: { address: stack.temporal.address, namespace: stack.temporal.namespace },
    stage3: { pointsPerSide: 4, shardSize: 1, maxConcurrentShards: 2, batchImages: 1 },
    ...more,
  });
}

async function startDatasetRun(
  client: Client,
  config: RunConfig,
): Promise<WorkflowHandle<typeof datasetRun>> {
  const runId = config.run;
  const input = datasetRunInput(config);
  // The config has no knob for this; a tiny value makes the stage continue as new.
  if (input.stage3) input.stage3.shardsPerWorkflowRun = SHARDS_PER_WORKFLOW_RUN;
  return client.workflow.start(datasetRun, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: runId,
    workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
    args: [input],
    memo: { config: input.configSummary },
    typedSearchAttributes: [
      { key: SAE_RUN, value: runId },
      { key: SAE_STAGE, value: 'starting' },
      { key: SAE_MODEL, value: config.models.sam },
    ],
  });
}

/** Ends as failed: stage 3 meets a model folder without a package (non-retryable). */
async function recordFailedRun(client: Client, stack: StackInfo, runId: string): Promise<History> {
  const noModel = mkdtempSync(join(tmpdir(), 'sae-no-model-'));
  try {
    const config = await smallRun(stack, runId, { models: { sam: pathToFileURL(noModel).href } });
    const handle = await startDatasetRun(client, config);
    await expectFailure(handle);
    return handle.fetchHistory();
  } finally {
    rmSync(noModel, { recursive: true, force: true });
  }
}

/** Ends as failed at once: stage 3 is off and there is no stage-3 output to build on. */
async function recordRunWithoutStage3(client: Client, stack: StackInfo, runId: string): Promise<History> {
  const config = await smallRun(stack, runId, { stage3: { enabled: false }, release: { enabled: true } });
  const handle = await startDatasetRun(client, config);
  await expectFailure(handle);
  return handle.fetchHistory();
}

/** Cancelled while stage 3 waits for its shards (the caller has stopped the inference worker). */
async function recordCancelledRun(client: Client, stack: StackInfo, runId: string): Promise<History> {
  const config = await smallRun(stack, runId);
  const handle = await startDatasetRun(client, config);
  const shard = client.workflow.getHandle(shardWorkflowId(runId, 0));
  for (;;) {
    const progress = await handle.query(runProgressQuery).catch(() => undefined);
    if (
      progress?.stage === 'stage3' &&
      (await shard.describe().then(
        () => true,
        () => false,
      ))
    )
      break;
    await sleep(200);
  }
  await handle.cancel();
  await expectFailure(handle);
  return handle.fetchHistory();
}

async function expectFailure(handle: WorkflowHandle<typeof datasetRun>): Promise<void> {
  const completed = await handle.result().then(
    () => true,
    () => false,
  );
  if (completed) throw new Error(`${handle.workflowId} was meant to fail, and completed`);
}

/** `sa-engine run --dry-run`: the dryRun workflow and a shard that only reads headers. */
async function recordDryRun(
  client: Client,
  stack: StackInfo,
  runId: string,
): Promise<Record<string, History>> {
  const config = await smallRun(stack, runId);
  const input = datasetRunInput(config);
  const handle = await client.workflow.start(dryRun, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: dryRunWorkflowId(runId),
    args: [{ ...input.stage3!, runId, outputUri: config.output }],
  });
  await handle.result();
  return {
    'dry-run': await handle.fetchHistory(),
    'automatic-shard-dry-run': await client.workflow
      .getHandle(shardWorkflowId(dryRunWorkflowId(runId), 0))
      .fetchHistory(),
  };
}

/**
 * The training queue served by stand-ins of the Python trainer's activities: retrainSam's history
 * records their results only, so replay needs no PyTorch.
 */
async function startStandInTrainer(stack: StackInfo): Promise<{ shutdown(): Promise<void> }> {
  const metrics: EvaluateSamResult = { images: 2, masks: 6, miou_1click: 0.5, noc90: 7.5, max_clicks: 20 };
  const boxes: EvaluateDetectorResult = {
    images: 2,
    boxes: 9,
    detections: 20,
    ...{ AP: 0.1, AP50: 0.3, AP75: 0.05, AP_small: 0, AP_medium: 0.1, AP_large: 0.2 },
    ...{ AR1: 0.05, AR10: 0.2, AR100: 0.3 },
    settings: { score_threshold: 0.1, nms_iou: 0.5, max_detections: 100 },
    protocol: 'pycocotools COCOeval, iouType bbox, useCats 0',
  };
  const activities: TrainingActivities = {
    trainSam: async (input) => ({
      model: `${input.modelName}/v${input.version}`,
      modelJson: `${input.modelName}/v${input.version}/model.json`,
      trainingSetUri: `${input.storage}/${input.trainingSet}`,
      trainingSetSha256: '0'.repeat(64),
      steps: input.steps,
      finalLoss: 0.25,
      seconds: 1,
      parity: {},
      files: [],
    }),
    evaluateSam: async () => metrics,
    trainDetector: async (input) => ({
      model: `${input.modelName}/v${input.version}`,
      modelJson: `${input.modelName}/v${input.version}/model.json`,
      trainingSetUri: `${input.storage}/${input.trainingSet}`,
      trainingSetSha256: '0'.repeat(64),
      steps: input.steps,
      finalLoss: 1.5,
      seconds: 1,
      parity: {},
      files: [],
    }),
    evaluateDetector: async () => boxes,
  };
  const connection = await NativeConnection.connect({ address: stack.temporal.address });
  const worker = await Worker.create({
    connection,
    namespace: stack.temporal.namespace,
    taskQueue: TASK_QUEUES.training,
    activities,
  });
  const running = worker.run();
  return {
    async shutdown() {
      worker.shutdown();
      await running;
      await connection.close();
    },
  };
}

/** Two retrains on a fresh registry; the second's history (the champion measured, the gate refusing). */
async function recordRetrain(client: Client, runId: string): Promise<History> {
  const registry = pathToFileURL(mkdtempSync(join(tmpdir(), 'sae-replay-registry-'))).href;
  const retrain = (n: number) =>
    client.workflow.start(retrainSam, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: `${runId}/retrain-${n}`,
      args: [
        {
          registry,
          modelName: 'replay-model',
          train: {
            storage: `file:///tmp/${runId}`,
            trainingSet: 'data/manifest.json',
            mode: 'decoder',
            steps: 2,
          },
          evaluation: { storage: `file:///tmp/${runId}`, dataset: 'data/manifest.json', maxImages: 2 },
          gate: { minGain: 0.01, maxNoc90Loss: 0 },
          trigger: `replay retrain ${n}`,
        },
      ],
    });
  await (await retrain(1)).result();
  const handle = await retrain(2);
  await handle.result();
  return handle.fetchHistory();
}

/** Two detector retrains on a fresh registry; the second's history (continued from the champion, refused). */
async function recordRetrainDetector(client: Client, runId: string): Promise<History> {
  const registry = pathToFileURL(mkdtempSync(join(tmpdir(), 'sae-replay-registry-'))).href;
  const retrain = (n: number) =>
    client.workflow.start(retrainDetector, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: `${runId}/detector-retrain-${n}`,
      args: [
        {
          registry,
          detectorName: 'replay-detector',
          sam: 'replay-model/v1',
          train: { storage: `file:///tmp/${runId}`, trainingSet: 'data/manifest.json', steps: 2 },
          evaluation: { storage: `file:///tmp/${runId}`, dataset: 'data/manifest.json', maxImages: 2 },
          gate: { minGain: 0.01 },
          trigger: `replay detector retrain ${n}`,
        },
      ],
    });
  await (await retrain(1)).result();
  const handle = await retrain(2);
  await handle.result();
  return handle.fetchHistory();
}

/** Every run of a child workflow, oldest first: its first run id is in the parent's history. */
async function continueAsNewChain(client: Client, workflowId: string, parent: History): Promise<History[]> {
  const started = parent.events?.find(
    (e) => e.childWorkflowExecutionStartedEventAttributes?.workflowExecution?.workflowId === workflowId,
  );
  let runId = started?.childWorkflowExecutionStartedEventAttributes?.workflowExecution?.runId ?? undefined;
  const chain: History[] = [];
  while (runId) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    chain.push(history);
    const last = history.events?.at(-1);
    runId = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  if (chain.length !== 2)
    throw new Error(`expected ${workflowId} to run twice (one continue-as-new), got ${chain.length}`);
  return chain;
}

async function recordStorageCheck(client: Client, stack: StackInfo, runId: string): Promise<History> {
  const handle = await client.workflow.start(storageCheck, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: `${runId}-storage-check`,
    args: [
      {
        storeUri: `s3://${stack.s3.bucket}/${runId}/storage-check`,
        taskQueues: [TASK_QUEUES.orchestration, TASK_QUEUES.inference],
      },
    ],
  });
  await handle.result();
  return handle.fetchHistory();
}

/** A stage-1 task: claimed, a mask refused, two accepted (one sent twice), finished. */
async function recordAnnotationTask(client: Client, stack: StackInfo, runId: string): Promise<History> {
  const [h, w] = [30, 40];
  const handle = await client.workflow.start(annotationTask, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: annotationTaskWorkflowId(runId, 0, 1),
    args: [
      {
        runId,
        outputUri: `${runRoot(stack, runId)}/out`,
        round: 0,
        image: { id: 1, uri: `${runRoot(stack, runId)}/images/1.jpg`, width: w, height: h },
        model: 'sae-ref@4',
        leaseSeconds: 300,
      },
    ],
  });
  const rect = (x0: number, x1: number) => {
    const pixels = new Uint8Array(h * w);
    for (let y = 5; y < 20; y++) for (let x = x0; x < x1; x++) pixels[y * w + x] = 1;
    return compressRle(encodeMask(pixels, h, w));
  };
  const submit = (submissionId: string, x0: number, x1: number) =>
    handle.executeUpdate(submitMaskUpdate, {
      args: [{ annotator: 'ann', submissionId, mask: rect(x0, x1), seconds: 9, clicks: 2 }],
    });
  await handle.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'ann' }] });
  await submit('empty', 0, 0).catch(() => undefined); // refused by the validator: not in the history
  await submit('m-1', 2, 10);
  await Promise.all([submit('m-2', 20, 30), submit('m-2', 20, 30)]);
  await handle.executeUpdate(finishTaskUpdate, { args: [{ annotator: 'ann' }] });
  await handle.result();
  return handle.fetchHistory();
}

/**
 * A stage-1 round over the synthetic images that continues as new while publishing (2 tasks per
 * run); one annotator claims each task, submits a mask and finishes it. The last run's history.
 */
async function recordAnnotationRound(client: Client, stack: StackInfo, runId: string): Promise<History> {
  const config = await smallRun(stack, runId);
  const handle = await client.workflow.start(annotationRound, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: roundWorkflowId(runId, 1),
    args: [
      {
        runId,
        outputUri: config.output,
        round: 1,
        modelUri: MODEL_URI,
        plan: { images: config.images, shardSize: config.stage3.shardSize },
        firstImage: 0,
        imageCount: IMAGES,
        embeddingDtype: 'float16',
        embedBatch: 1,
        embedWindow: 2,
        leaseSeconds: 300,
        targetMasks: null,
        deadlineSeconds: 3600,
        pollSeconds: 1,
        tasksPerWorkflowRun: 2,
      },
    ],
  });
  for (let done = 0; done < IMAGES;) {
    const claimed = await claimFirst(client, await freeTaskIds(client, runId, 10), 'ann');
    if (!claimed) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      continue;
    }
    const task = client.workflow.getHandle(claimed.taskId);
    const { image } = await task.query(taskStateQuery);
    const pixels = new Uint8Array(image.height * image.width);
    for (let y = 2; y < 12; y++) for (let x = 2; x < 12; x++) pixels[y * image.width + x] = 1;
    const mask = compressRle(encodeMask(pixels, image.height, image.width));
    await task.executeUpdate(submitMaskUpdate, {
      args: [{ annotator: 'ann', submissionId: `m-${image.id}`, mask, seconds: 9, clicks: 2 }],
    });
    await task.executeUpdate(finishTaskUpdate, { args: [{ annotator: 'ann' }] });
    done += 1;
  }
  await handle.result();
  return handle.fetchHistory();
}

/**
 * A stage-2 round pre-filled by the reference detector (loose filters, so every image has masks);
 * the annotator deletes each task's first pre-filled mask, adds one and finishes. The round's
 * history and one task's (the deletion, and the kept masks accepted at close).
 */
async function recordPrefilledRound(
  client: Client,
  stack: StackInfo,
  runId: string,
): Promise<Record<string, History>> {
  const config = await smallRun(stack, runId);
  const handle = await client.workflow.start(annotationRound, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: roundWorkflowId(runId, 1, 'stage2'),
    args: [
      {
        stage: 'stage2',
        prefill: {
          detectorUri: DETECTOR_URI,
          settings: {
            prompt: 'centre-point',
            predIouThresh: 0,
            stabilityScoreThresh: 0,
            boxNmsThresh: 0.7,
            batchSize: 8,
            detect: { scoreThreshold: 0, maxDetections: 4 },
          },
        },
        runId,
        outputUri: config.output,
        round: 1,
        modelUri: MODEL_URI,
        plan: { images: config.images, shardSize: config.stage3.shardSize },
        firstImage: 0,
        imageCount: IMAGES,
        embeddingDtype: 'float16',
        embedBatch: IMAGES,
        embedWindow: 1,
        leaseSeconds: 300,
        targetMasks: null,
        deadlineSeconds: 3600,
        pollSeconds: 1,
        tasksPerWorkflowRun: 100,
      },
    ],
  });
  let taskId: string | undefined;
  for (let done = 0; done < IMAGES;) {
    const claimed = await claimFirst(client, await freeTaskIds(client, runId, 10), 'ann');
    if (!claimed) {
      await sleep(500);
      continue;
    }
    const task = client.workflow.getHandle(claimed.taskId);
    const { image, prefill } = await task.query(taskStateQuery);
    if (!prefill) throw new Error(`task ${claimed.taskId} has no pre-fill: loosen the filters`);
    await task.executeUpdate(rejectPrefillUpdate, {
      args: [{ annotator: 'ann', index: 0, reason: 'wrong' }],
    });
    const pixels = new Uint8Array(image.height * image.width);
    for (let y = 2; y < 12; y++) for (let x = 2; x < 12; x++) pixels[y * image.width + x] = 1;
    const mask = compressRle(encodeMask(pixels, image.height, image.width));
    await task.executeUpdate(submitMaskUpdate, {
      args: [{ annotator: 'ann', submissionId: `m-${image.id}`, mask, seconds: 9, clicks: 2 }],
    });
    await task.executeUpdate(finishTaskUpdate, { args: [{ annotator: 'ann' }] });
    taskId ??= claimed.taskId;
    done += 1;
  }
  await handle.result();
  const task = client.workflow.getHandle(taskId!);
  await task.result();
  return {
    'annotation-round-prefilled': await handle.fetchHistory(),
    'annotation-task-prefilled': await task.fetchHistory(),
  };
}

/**
 * The history as protobufjs writes it to JSON (enums by name, int64 as strings, bytes in base64),
 * laid out by the repository's prettier. Not `historyToJSON`: with the protobufjs copies this
 * install has, @temporalio/common's proto-JSON helpers throw "type must be a Type".
 */
/** `--save id=name,...`: the histories of workflows that ran already, as they are. */
async function saveHistories(client: Client, pairs: string, out: string): Promise<void> {
  mkdirSync(out, { recursive: true });
  for (const pair of pairs.split(',').filter(Boolean)) {
    const [workflowId, name] = pair.split('=');
    if (!workflowId || !name) throw new Error(`--save expects WORKFLOW_ID=NAME, got "${pair}"`);
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const file = join(out, `${name}.json`);
    writeFileSync(file, await formatJson(file, history));
    console.log(`wrote ${file} (${history.events?.length ?? 0} events, from ${workflowId})`);
  }
}

async function formatJson(file: string, history: History): Promise<string> {
  const options = await prettier.resolveConfig(file);
  return prettier.format(JSON.stringify(history), { ...options, filepath: file });
}

await main();
