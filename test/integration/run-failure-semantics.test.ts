// How a dataset run ends when it does not complete, on the real dev stack: run.json records
// 'failed' (with the reason) or 'cancelled', a permanent error fails at once instead of being
// retried forever, a run with stage 3 off and nothing to build on says so, and a manual
// `sa-engine audit` of a run in flight never takes the id of the run's own audit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startRun } from '../../client/runs.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { innermostCause } from '../../lib/innermost-cause.ts';
import { datasetRunInput } from '../../lib/run-input.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { auditStage, auditWorkflowId, manualAuditWorkflowId } from '../../workflows/audit.ts';
import { datasetWorkflowId } from '../../workflows/dataset-build.ts';
import { shardWorkflowId } from '../../workflows/stage3.ts';
import { datasetRun, runProgressQuery, stage3WorkflowId } from '../../workflows/dataset-run.ts';
import { testStack } from '../helpers/stack.ts';
import {
  REFERENCE_MODEL_URI,
  stage3Config,
  startTestWorkers,
  storeOptionsFor,
  writeStage3Images,
} from '../helpers/stage3-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { executionsOf } from '../helpers/executions.ts';

const stack = testStack();

interface RunRecord {
  run: string;
  status: string;
  result?: { error?: string; dataset?: unknown };
}

async function runRecord(config: RunConfig): Promise<RunRecord> {
  const out = openObjectStore(config.output, storeOptionsFor(stack));
  return JSON.parse((await out.get(runLayout.runRecord(config.run))).toString('utf8')) as RunRecord;
}

/** The failure at the bottom of a chain (workflow → activity or child → application error). */
function innermost(err: unknown): ApplicationFailure {
  const inner = innermostCause(err);
  expect(inner).toBeInstanceOf(ApplicationFailure);
  return inner as ApplicationFailure;
}

/** The run's failure, or a test failure when it completes. */
async function failureOf(handle: WorkflowHandle<typeof datasetRun>): Promise<WorkflowFailedError> {
  const outcome = await handle.result().then(
    (result) => new Error(`the run completed: ${JSON.stringify(result)}`),
    (err: unknown) => err,
  );
  expect(outcome).toBeInstanceOf(WorkflowFailedError);
  return outcome as WorkflowFailedError;
}

/** Attempts of every activity of a workflow, by activity type, from its history. */
async function activityAttempts(client: Client, workflowId: string): Promise<Record<string, number>> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const attempts: Record<string, number> = {};
  const types = new Map<string, string>();
  for (const event of history.events ?? []) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(event.eventId), scheduled.activityType?.name ?? '?');
    const started = event.activityTaskStartedEventAttributes;
    if (started) {
      const type = types.get(String(started.scheduledEventId)) ?? '?';
      attempts[type] = Math.max(attempts[type] ?? 0, started.attempt ?? 0);
    }
  }
  return attempts;
}

/** The task queue of every activity of a workflow, by activity type, from its history. */
async function activityQueues(client: Client, workflowId: string): Promise<Record<string, string>> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const queues: Record<string, string> = {};
  for (const event of history.events ?? []) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled) queues[scheduled.activityType?.name ?? '?'] = scheduled.taskQueue?.name ?? '?';
  }
  return queues;
}

describe('how a dataset run ends', () => {
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers | undefined;
  const tempDirs: string[] = [];

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
  });

  afterEach(async () => {
    await workers?.shutdown();
    workers = undefined;
  });

  afterAll(async () => {
    await connection?.close();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('stage 3 failing on a permanent error fails the run at once, and run.json says failed and why', async () => {
    workers = await startTestWorkers(stack);
    const fixture = await writeStage3Images(stack, 2);
    // A model folder without a model package: ModelPackageError, which no retry can fix.
    const noModel = mkdtempSync(join(tmpdir(), 'sae-no-model-'));
    tempDirs.push(noModel);
    const config = createRunConfigSchema().parse({
      ...stage3Config(fixture, stack),
      models: { sam: pathToFileURL(noModel).href },
    });
    const handle = await startRun(client, config);

    const failure = await failureOf(handle);
    expect(failure.cause?.message).toMatch(/Child Workflow execution failed/);
    const record = await runRecord(config);
    expect(record.status).toBe('failed');
    expect(record.result?.error).toMatch(/^ModelPackageError: cannot read the model package/);
    // Tried once, not retried.
    expect(await activityAttempts(client, shardWorkflowId(config.run, 0))).toEqual({ segmentShard: 1 });
  });

  it('a failed run resumes under its own id once fixed; other inputs, or a completed run, are refused', async () => {
    workers = await startTestWorkers(stack);
    const fixture = await writeStage3Images(stack, 2);
    const noModel = mkdtempSync(join(tmpdir(), 'sae-no-model-'));
    tempDirs.push(noModel);
    const good = stage3Config(fixture, stack);
    const broken = createRunConfigSchema().parse({ ...good, models: { sam: pathToFileURL(noModel).href } });
    await failureOf(await startRun(client, broken));
    const failedRecord = await runRecord(good);
    expect(failedRecord.status).toBe('failed');

    // Resuming with another shard size would mix two plans: refused before anything is written.
    const otherShards = createRunConfigSchema().parse({ ...good, stage3: { ...good.stage3, shardSize: 1 } });
    const mismatch = innermost(await failureOf(await startRun(client, otherShards)));
    expect(mismatch.type).toBe('RunIdentityMismatchError');
    expect(mismatch.message).toMatch(/shardSize: 3, now 1/);
    expect(await runRecord(good)).toEqual(failedRecord);

    // The model fixed, the same images and shard size: the run resumes under its id and completes.
    const resumed = await startRun(client, good);
    expect((await resumed.result()).dataset!.images).toBe(2);
    expect((await runRecord(good)).status).toBe('completed');

    // A completed run is not started again: Temporal refuses while it remembers the run, and once
    // its retention has dropped it (here: deleted), the record in storage still does.
    await expect(startRun(client, good)).rejects.toThrow(/has completed and its outputs are kept/);
    await client.workflowService.deleteWorkflowExecution({
      namespace: stack.temporal.namespace,
      workflowExecution: { workflowId: good.run },
    });
    await waitFor('the deleted run to be gone', async () =>
      client.workflow
        .getHandle(good.run)
        .describe()
        .then(
          () => false,
          () => true,
        ),
    );
    const completed = innermost(await failureOf(await startRun(client, good)));
    expect(completed.type).toBe('RunAlreadyCompletedError');
    expect((await runRecord(good)).status).toBe('completed');
  });

  it('a cancelled run ends as cancelled in run.json, recorded while it was being cancelled', async () => {
    // No inference worker: stage 3's shards wait for one, so the run is surely mid-stage-3.
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration]);
    const fixture = await writeStage3Images(stack, 2);
    const config = stage3Config(fixture, stack, { shardSize: 1 });
    const handle = await startRun(client, config);
    await waitFor('the run to start its shards', async () => {
      const progress = await handle.query(runProgressQuery).catch(() => undefined);
      if (progress?.stage !== 'stage3') return false;
      return client.workflow
        .getHandle(shardWorkflowId(config.run, 0))
        .describe()
        .then(
          () => true,
          () => false,
        );
    });
    expect((await runRecord(config)).status).toBe('running');

    await handle.cancel();
    const failure = await failureOf(handle);
    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    const record = await runRecord(config);
    expect(record.status).toBe('cancelled');
    expect(record.result?.error).toBe('cancelled during stage3');
  });

  it('a run cancelled after stage 3 has continued as new ends cancelled, and so do the stage and its shards', async () => {
    // Temporal sends a parent's cancel to the child's first run only (temporalio/features#503): the
    // run used to wait forever for a stage that never heard it.
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration]); // shards wait: no inference
    const fixture = await writeStage3Images(stack, 3);
    const config = stage3Config(fixture, stack, { shardSize: 1, maxConcurrentShards: 2, batchImages: 1 });
    const input = datasetRunInput(config);
    input.stage3!.shardsPerWorkflowRun = 1; // the config has no knob: continue as new every shard
    const handle = await client.workflow.start(datasetRun, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: config.run,
      args: [input],
    });
    const stage3Id = stage3WorkflowId(config.run);
    // Shard 1 is started by the stage's second run, which holds shard 0 from the first.
    await waitFor('stage 3 to continue as new and start shard 1', async () => {
      const shard1 = client.workflow.getHandle(shardWorkflowId(config.run, 1));
      const started = await shard1.describe().then(
        () => true,
        () => false,
      );
      return started && (await executionsOf(client, stage3Id)).length >= 2;
    });

    await handle.cancel();
    const failure = await failureOf(handle);
    expect(failure.cause).toBeInstanceOf(CancelledFailure);
    expect((await client.workflow.getHandle(stage3Id).describe()).status.name).toBe('CANCELLED');
    for (const shard of [0, 1]) {
      await waitFor(`shard ${shard} to close`, async () => {
        const status = (await client.workflow.getHandle(shardWorkflowId(config.run, shard)).describe())
          .status;
        return status.name !== 'RUNNING';
      });
      const status = (await client.workflow.getHandle(shardWorkflowId(config.run, shard)).describe()).status;
      expect(status.name).toBe('CANCELLED');
    }
    expect((await runRecord(config)).result?.error).toBe('cancelled during stage3');
  });

  it('a run with stage 3 off and no stage-3 output to build on fails at once and says so', async () => {
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration]);
    const fixture = await writeStage3Images(stack, 1);
    const config = createRunConfigSchema().parse({
      ...stage3Config(fixture, stack),
      stage3: { enabled: false },
      release: { enabled: true },
    });
    const handle = await startRun(client, config);

    const failure = await failureOf(handle);
    expect(failure.cause).toBeInstanceOf(ApplicationFailure);
    expect((failure.cause as ApplicationFailure).type).toBe('NoStage3OutputError');
    expect(failure.cause?.message).toMatch(/disables stage 3.*no stage-3 plan at/);
    expect(await activityAttempts(client, datasetWorkflowId(config.run))).toMatchObject({ planDataset: 1 });
    const record = await runRecord(config);
    expect(record.status).toBe('failed');
    expect(record.result?.error).toMatch(/disables stage 3/);
  });

  it("a manual audit in flight leaves the run's own audit alone", async () => {
    workers = await startTestWorkers(stack);
    // Images and the human masks they were drawn from, so that the run can audit itself.
    const fixture = await writeStage3Images(stack, 1);
    const root = `s3://${stack.s3.bucket}/${fixture.prefix}/truth`;
    const truth = openObjectStore(root, storeOptionsFor(stack));
    await generateSynthDataset({
      images: 2,
      seed: 5,
      write: (key, bytes) => truth.put(key, Buffer.from(bytes)),
    });
    const config = createRunConfigSchema().parse({
      ...stage3Config(fixture, stack),
      images: { prefix: `${root}/images` },
      models: { sam: REFERENCE_MODEL_URI },
      audit: { enabled: true, reference: { uri: `${root}/${ANNOTATIONS_KEY}`, format: 'coco' } },
    });
    // `sa-engine audit RUN` as its workflow id makes it, held open (its first task an hour away)
    // for the whole run, as a long manual audit would be.
    const manualId = manualAuditWorkflowId(config.run);
    expect(manualId).not.toBe(auditWorkflowId(config.run));
    const manual = await client.workflow.start(auditStage, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: manualId,
      args: [{ runId: config.run, outputUri: config.output, audit: config.audit }],
      startDelay: '1 hour',
    });
    try {
      const result = await (await startRun(client, config)).result();
      expect(result.audit?.imagesAudited).toBe(2);
      expect((await runRecord(config)).status).toBe('completed');
      // The run's audit is its own child; the manual one is untouched and still open.
      const own = await client.workflow.getHandle(auditWorkflowId(config.run)).describe();
      expect(own.status.name).toBe('COMPLETED');
      expect(own.raw.workflowExecutionInfo?.parentExecution?.workflowId).toBe(config.run);
      // The audit's CPU work runs on the inference pool, in its three steps.
      expect(await activityQueues(client, auditWorkflowId(config.run))).toEqual({
        drawAuditSample: TASK_QUEUES.inference,
        auditChunk: TASK_QUEUES.inference,
        finishAudit: TASK_QUEUES.inference,
      });
      expect((await manual.describe()).status.name).toBe('RUNNING');
      // A second manual audit of the same run while one is open is refused, not run twice.
      await expect(
        client.workflow.start(auditStage, {
          taskQueue: TASK_QUEUES.orchestration,
          workflowId: manualId,
          args: [{ runId: config.run, outputUri: config.output, audit: config.audit }],
        }),
      ).rejects.toBeInstanceOf(WorkflowExecutionAlreadyStartedError);
    } finally {
      await manual.terminate('test over');
    }
  });
});
