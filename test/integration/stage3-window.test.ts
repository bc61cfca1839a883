// The stage-3 sliding window across continue-as-new: a run that reaches its shard budget hands the
// shards still running to the next run instead of waiting for all of them (which stalled the whole
// window at every boundary), and every shard is run and counted exactly once.
import { Client, Connection, WorkflowIdReusePolicy } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetRunInput } from '../../lib/run-input.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { shardWorkflowId, type Stage3Cursor } from '../../workflows/stage3.ts';
import { datasetRun, stage3WorkflowId } from '../../workflows/dataset-run.ts';
import { stage3Config, startTestWorkers, writeStage3Images } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';
import { cursorOf, executionsOf } from '../helpers/executions.ts';

const stack = testStack();
const SHARDS = 6;

describe('the stage-3 window across continue-as-new', () => {
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    workers = await startTestWorkers(stack);
  });
  afterAll(async () => {
    await workers?.shutdown();
    await connection?.close();
  });

  it('hands running shards to the next run and counts every shard once', async () => {
    const fixture = await writeStage3Images(stack, SHARDS);
    const config = stage3Config(fixture, stack, { shardSize: 1, maxConcurrentShards: 2, batchImages: 1 });
    const input = datasetRunInput(config);
    input.stage3!.shardsPerWorkflowRun = 2; // the config has no knob: continue as new every 2 shards
    const handle = await client.workflow.start(datasetRun, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: config.run,
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      args: [input],
    });
    const result = await handle.result();
    expect(result.stage3).toMatchObject({
      shards: SHARDS,
      shardsDone: SHARDS,
      imagesDone: SHARDS,
      imagesFailed: 0,
    });

    // Each shard workflow ran once.
    for (let shard = 0; shard < SHARDS; shard++) {
      expect(await executionsOf(client, shardWorkflowId(config.run, shard))).toHaveLength(1);
    }
    // The stage continued as new (6 shards, 2 per run), and a later run took over shards still
    // running: the window did not drain at the boundary.
    const runs = await executionsOf(client, stage3WorkflowId(config.run));
    expect(runs.length).toBeGreaterThanOrEqual(3);
    const handedOver = (
      await Promise.all(
        runs.map((runId) => cursorOf<Stage3Cursor>(client, stage3WorkflowId(config.run), runId)),
      )
    )
      .map((cursor) => cursor?.running ?? [])
      .filter((running) => running.length > 0);
    expect(handedOver.length).toBeGreaterThan(0);
  });
});
