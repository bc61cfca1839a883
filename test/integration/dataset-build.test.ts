// The dataset build as its own workflow (`<run>/dataset`): one activity per stage-3 shard on the
// inference pool (the CPU work stays off the orchestration pool), continue-as-new with a cursor,
// and shards an earlier attempt built are reused rather than built again.
import { Client, Connection, WorkflowIdReusePolicy } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetRunInput } from '../../lib/run-input.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { datasetRun } from '../../workflows/dataset-run.ts';
import { datasetBuild, datasetWorkflowId, type DatasetBuildCursor } from '../../workflows/dataset-build.ts';
import { stage3Config, startTestWorkers, writeStage3Images } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';
import { cursorOf, executionsOf } from '../helpers/executions.ts';

const stack = testStack();
const SHARDS = 5;

describe('the dataset build workflow', () => {
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

  it('builds one shard per activity on the inference pool, continues as new, and reuses built shards', async () => {
    const fixture = await writeStage3Images(stack, SHARDS);
    const config = stage3Config(fixture, stack, { shardSize: 1, maxConcurrentShards: 2, batchImages: 1 });
    const run = await client.workflow.execute(datasetRun, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: config.run,
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      args: [{ ...datasetRunInput(config), release: { shortestSide: 8 } }],
    });
    expect(run.dataset).toMatchObject({ images: SHARDS, imagesFailed: 0, releaseImages: SHARDS });
    expect(run.dataset!.masks).toBe(run.stage3!.masks);

    // The run's child: a shard activity each, on the inference queue, then the merge.
    const scheduled = await activitiesOf(datasetWorkflowId(config.run));
    expect(scheduled.filter((a) => a.type === 'buildDatasetShard')).toHaveLength(SHARDS);
    expect(new Set(scheduled.map((a) => `${a.type} on ${a.queue}`))).toEqual(
      new Set([
        `planDataset on ${TASK_QUEUES.orchestration}`,
        `buildDatasetShard on ${TASK_QUEUES.inference}`,
        `finishDataset on ${TASK_QUEUES.inference}`,
      ]),
    );
    const manifest = await fixture.out.get(runLayout.datasetManifest(config.run));
    const stats = await fixture.out.get(runLayout.datasetStats(config.run));

    // Built again with a budget of 2 shards per workflow run, after losing shard 3's part: the
    // other shards are reused (not read again), shard 3 is built again, and the files come out the same.
    await fixture.out.delete(runLayout.datasetShardSummary(config.run, 3));
    await fixture.out.delete(runLayout.releaseImage(config.run, 3));
    // Were shard 0 built again, its missing masks file would fail the build.
    await fixture.out.delete(runLayout.masks(config.run, 0));
    const againId = `${config.run}/dataset-again`;
    const again = await client.workflow.execute(datasetBuild, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: againId,
      args: [
        {
          runId: config.run,
          outputUri: fixture.outputUri,
          release: { shortestSide: 8 },
          maxConcurrentShards: 2,
          shardsPerWorkflowRun: 2,
        },
      ],
    });
    expect(again).toEqual(run.dataset);
    expect(await fixture.out.get(runLayout.datasetManifest(config.run))).toEqual(manifest);
    expect(await fixture.out.get(runLayout.datasetStats(config.run))).toEqual(stats);
    expect(await fixture.out.exists(runLayout.releaseImage(config.run, 3))).toBe(true);

    const runs = await executionsOf(client, againId);
    expect(runs).toHaveLength(3); // 5 shards, 2 per run
    const cursors = await Promise.all(
      runs.map((runId) => cursorOf<DatasetBuildCursor>(client, againId, runId)),
    );
    expect(cursors.map((c) => c?.nextShard ?? 0).sort()).toEqual([0, 2, 4]);
  });

  async function activitiesOf(workflowId: string): Promise<Array<{ type: string; queue: string }>> {
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    return (history.events ?? [])
      .map((e) => e.activityTaskScheduledEventAttributes)
      .filter((a) => a != null)
      .map((a) => ({ type: a.activityType?.name ?? '?', queue: a.taskQueue?.name ?? '?' }));
  }
});
