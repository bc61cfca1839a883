// Rolling out a new build while runs are in flight (docs/deploy.md "Rollout"), on the real dev
// server with `sa-engine worker` processes as a cluster runs them: build A serves a stage-1 task
// that waits on a person; build B becomes current; new work goes to B while the waiting task stays
// pinned to A and finishes there; a short storage check auto-upgrades. The replay tests guard the
// other half of a rollout, that a new build still replays the old histories.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StackInfo } from '../../infra/stack-info.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';
import {
  annotationTaskWorkflowId,
  claimTaskUpdate,
  finishTaskUpdate,
  submitMaskUpdate,
} from '../../lib/stage1/task-messages.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { annotationTask } from '../../workflows/stage1-task.ts';
import { storageCheck } from '../../workflows/storage-check.ts';
import { spawnWorkerProcess, type WorkerProcess } from '../helpers/processes.ts';
import { startOwnStack, type Cleanups } from '../helpers/own-stack.ts';
import { waitFor } from '../helpers/wait.ts';

const { VersioningBehavior } = temporal.api.enums.v1;

describe('a new build rolls out while a run waits on people', () => {
  // A stack of its own: making a build current routes the whole task queue, and the other
  // integration files share the suite's stack with unversioned workers.
  const deploymentName = 'sa-engine';
  const dir = mkdtempSync(join(tmpdir(), 'sae-rollout-'));
  const cleanups: Cleanups = [];
  let stack: StackInfo;
  let outputUri: string;
  let connection: Connection;
  let client: Client;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    stack = (await startOwnStack(cleanups, 'sae-rollout-stack-')).info;
    outputUri = `s3://${stack.s3.bucket}/rollout/out`;
    connection = await Connection.connect({ address: stack.temporal.address });
    cleanups.push(() => connection.close());
    client = new Client({ connection, namespace: stack.temporal.namespace });
  });
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.kill()));
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function startBuild(buildId: string): Promise<WorkerProcess> {
    const worker = await spawnWorkerProcess(stack, {
      queues: [TASK_QUEUES.orchestration],
      logFile: join(dir, `${buildId}.log`),
      stateDir: dir,
      args: ['--deployment-name', deploymentName, '--build-id', buildId, '--shutdown-grace', '20'],
    });
    workers.push(worker);
    return worker;
  }

  /** What `temporal worker deployment set-current-version` does; retried until the build has polled. */
  async function makeCurrent(buildId: string): Promise<void> {
    await waitFor(
      `${buildId} to become current`,
      async () => {
        try {
          await connection.workflowService.setWorkerDeploymentCurrentVersion({
            namespace: stack.temporal.namespace,
            deploymentName,
            buildId,
            identity: 'worker-versioning.test',
          });
          return true;
        } catch {
          return false;
        }
      },
      60_000,
      500,
    );
  }

  async function versionOf(handle: WorkflowHandle) {
    const info = (await handle.describe()).raw.workflowExecutionInfo?.versioningInfo;
    return { buildId: info?.deploymentVersion?.buildId, behavior: info?.behavior };
  }

  function startTask(runId: string, image: number) {
    return client.workflow.start(annotationTask, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: annotationTaskWorkflowId(runId, 0, image),
      args: [
        {
          runId,
          outputUri,
          round: 0,
          image: { id: image, uri: `s3://photos/img-${image}.jpg`, width: 8, height: 8 },
          model: 'sae-ref@4',
          leaseSeconds: 600,
        },
      ],
    });
  }

  async function annotate(task: WorkflowHandle<typeof annotationTask>, annotator: string): Promise<void> {
    const pixels = new Uint8Array(64).fill(1, 0, 20);
    const mask = compressRle(encodeMask(pixels, 8, 8));
    await task.executeUpdate(submitMaskUpdate, {
      args: [{ annotator, submissionId: 's-1', mask, seconds: 3, clicks: 1 }],
    });
    await task.executeUpdate(finishTaskUpdate, { args: [{ annotator }] });
  }

  it('keeps the waiting task on its build, sends new work to the new build, and drains the old one', async () => {
    const buildA = await startBuild('build-a');
    await makeCurrent('build-a');
    const runId = `rollout-${randomUUID().slice(0, 8)}`;
    const waiting = await startTask(runId, 1);
    // The server caches a namespace's search attributes for a while after they are registered; until
    // it knows them, the task's workflow task fails (and is retried), and so does this Update.
    await waitFor(
      'the new namespace to accept its search attributes',
      () =>
        waiting.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'ann' }] }).then(
          () => true,
          () => false,
        ),
      20_000,
      1000,
    );
    expect(await versionOf(waiting)).toEqual({
      buildId: 'build-a',
      behavior: VersioningBehavior.VERSIONING_BEHAVIOR_PINNED,
    });

    // The rollout: build B starts beside A and becomes current.
    await startBuild('build-b');
    await makeCurrent('build-b');
    const fresh = await startTask(runId, 2);
    await fresh.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'bob' }] });
    expect(await versionOf(fresh)).toEqual({
      buildId: 'build-b',
      behavior: VersioningBehavior.VERSIONING_BEHAVIOR_PINNED,
    });

    // The person on the old task finishes: build A serves it to the end.
    await annotate(waiting, 'ann');
    expect(await waiting.result()).toMatchObject({ masks: 1, annotators: ['ann'] });
    expect((await versionOf(waiting)).buildId).toBe('build-a');
    const completedBy = new Set<string>();
    for (const event of (await waiting.fetchHistory()).events ?? []) {
      const version = event.workflowTaskCompletedEventAttributes?.deploymentVersion?.buildId;
      if (version) completedBy.add(version);
    }
    expect([...completedBy]).toEqual(['build-a']);

    // A short workflow is not pinned: it runs on whatever build is current.
    const check = await client.workflow.start(storageCheck, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: `rollout-check-${runId}`,
      args: [{ storeUri: outputUri, taskQueues: [TASK_QUEUES.orchestration] }],
    });
    await check.result();
    expect(await versionOf(check)).toEqual({
      buildId: 'build-b',
      behavior: VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE,
    });

    // Build A has nothing pinned to it any more: SIGTERM stops it cleanly; B finishes its own task.
    expect(await buildA.terminate()).toBe(0);
    await annotate(fresh, 'bob');
    expect(await fresh.result()).toMatchObject({ masks: 1, annotators: ['bob'] });
  });
});
