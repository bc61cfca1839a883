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
// and a storage check, then writes each workflow's history as JSON.
// Options: --out DIR (default test/fixtures/histories), --state-dir DIR (the `dev up` state folder).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection, WorkflowIdReusePolicy } from '@temporalio/client';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import prettier from 'prettier';
import { defaultStateDir, readDevState } from '../infra/dev-state.ts';
import type { StackInfo } from '../infra/stack-info.ts';
import { openObjectStore, type ObjectStoreOptions } from '../lib/object-store.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { datasetRunInput } from '../lib/run-input.ts';
import { createSegmenterFactory } from '../lib/segmenter.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { startWorkers } from '../workers/run-workers.ts';
import { auditWorkflowId } from '../workflows/audit.ts';
import { shardWorkflowId } from '../workflows/automatic-stage.ts';
import { datasetRun, stage3WorkflowId } from '../workflows/dataset-run.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from '../workflows/search-attributes.ts';
import { storageCheck } from '../workflows/storage-check.ts';

const REPO = resolve(import.meta.dirname, '..');
const MODEL_URI = pathToFileURL(join(REPO, 'models/sae-ref')).href;
const IMAGES = 3;
/** With one image per shard, the stage continues as new once, after shard 2 of 3. */
const SHARDS_PER_WORKFLOW_RUN = 2;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(REPO, 'test/fixtures/histories') },
      'state-dir': { type: 'string', default: defaultStateDir() },
    },
  });
  const stack = readDevState(values['state-dir'])?.info;
  if (!stack)
    throw new Error(`no dev stack recorded in ${values['state-dir']}; run \`npx sa-engine dev up\``);
  Runtime.install({ logger: new DefaultLogger('WARN') });

  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace });
  const storeOptions = storeOptionsFor(stack);
  const workers = await startWorkers({
    address: stack.temporal.address,
    namespace: stack.temporal.namespace,
    queues: [TASK_QUEUES.orchestration, TASK_QUEUES.inference],
    storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions }),
  });
  try {
    const runId = `replay-${Date.now().toString(36)}`;
    const histories = {
      ...(await recordDatasetRun(client, stack, runId)),
      'storage-check': await recordStorageCheck(client, stack, runId),
    };
    mkdirSync(values.out, { recursive: true });
    for (const [name, history] of Object.entries(histories)) {
      const file = join(values.out, `${name}.json`);
      writeFileSync(file, await formatJson(file, history));
      console.log(`wrote ${file} (${history.events?.length ?? 0} events)`);
    }
  } finally {
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
  const root = `s3://${stack.s3.bucket}/${runId}`;
  const store = openObjectStore(root, storeOptionsFor(stack));
  await generateSynthDataset({
    images: IMAGES,
    seed: 5,
    write: (key, bytes) => store.put(key, Buffer.from(bytes)),
  });
  const config = createRunConfigSchema().parse({
    run: runId,
    images: { prefix: `${root}/images` },
    output: `${root}/out`,
    storage: { s3: { endpoint: stack.s3.endpoint, region: stack.s3.region } },
    models: { sam: MODEL_URI },
    temporal: { address: stack.temporal.address, namespace: stack.temporal.namespace },
    stage3: { pointsPerSide: 4, shardSize: 1, maxConcurrentShards: 2, batchImages: 1 },
    audit: { enabled: true, reference: { uri: `${root}/${ANNOTATIONS_KEY}`, format: 'coco' } },
  });
  const input = datasetRunInput(config);
  // The config has no knob for this; a tiny value makes the stage continue as new.
  input.stage3!.shardsPerWorkflowRun = SHARDS_PER_WORKFLOW_RUN;
  const handle = await client.workflow.start(datasetRun, {
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
  await handle.result();

  const runHistory = await handle.fetchHistory();
  const [continued, finalRun] = await continueAsNewChain(client, stage3WorkflowId(runId), runHistory);
  return {
    'dataset-run': runHistory,
    'automatic-stage-continued-as-new': continued!,
    'automatic-stage-final-run': finalRun!,
    'automatic-shard': await client.workflow.getHandle(shardWorkflowId(runId, 0)).fetchHistory(),
    'audit-stage': await client.workflow.getHandle(auditWorkflowId(runId)).fetchHistory(),
  };
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

/**
 * The history as protobufjs writes it to JSON (enums by name, int64 as strings, bytes in base64),
 * laid out by the repository's prettier. Not `historyToJSON`: with the protobufjs copies this
 * install has, @temporalio/common's proto-JSON helpers throw "type must be a Type".
 */
async function formatJson(file: string, history: History): Promise<string> {
  const options = await prettier.resolveConfig(file);
  return prettier.format(JSON.stringify(history), { ...options, filepath: file });
}

await main();
