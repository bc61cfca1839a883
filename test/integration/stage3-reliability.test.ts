// Stage 3 when things break underneath it: a worker killed mid-shard, the S3 server and the
// Temporal server restarted mid-run, corrupt images, and a run started twice. The cases that stop
// servers start their own dev stack, so the suite's shared one is never disturbed.
import { join } from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { clearLockedPorts } from 'get-port';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RunAlreadyExistsError, startRun } from '../../client/runs.ts';
import { startS3Server, stopProcess } from '../../infra/dev-stack.ts';
import type { StackInfo } from '../../infra/stack-info.ts';
import type { RunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { readShardResult } from '../../lib/stage3/shard-runner.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { shardWorkflowId } from '../../workflows/stage3.ts';
import type { datasetRun, DatasetRunResult } from '../../workflows/dataset-run.ts';
import { pngBomb } from '../helpers/hand-made-images.ts';
import { readLog, spawnWorkerProcess, type WorkerProcess } from '../helpers/processes.ts';
import { connectClient, restartTemporal, startOwnStack } from '../helpers/own-stack.ts';
import { testStack } from '../helpers/stack.ts';
import {
  expectEveryImageExactlyOnce,
  keysUnder,
  midShard,
  stage3Config,
  startTestWorkers,
  writeStage3Images,
} from '../helpers/stage3-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const CASE_TIMEOUT_MS = 180_000;
/** Short enough that a killed worker's shard is retried within seconds, not minutes. */
const TEST_HEARTBEAT_TIMEOUT = '8s';

// Teardown in reverse order of setup, whatever happened in the test.
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch((err) => console.warn('cleanup:', err));
});

// ---------------------------------------------------------------------------------------------
// Helpers

async function inProcessWorkers(stack: StackInfo, queues?: string[]): Promise<RunningWorkers> {
  const workers = await startTestWorkers(stack, queues);
  cleanups.push(() => workers.shutdown());
  return workers;
}

/** How the shard activity ran, from the shard workflow's history. */
async function shardActivityHistory(
  client: Client,
  runId: string,
  shard: number,
): Promise<{ heartbeatTimeoutSeconds: number; lastAttempt: number }> {
  const history = await client.workflow.getHandle(shardWorkflowId(runId, shard)).fetchHistory();
  const events = history.events ?? [];
  const scheduled = events.find(
    (e) => e.activityTaskScheduledEventAttributes,
  )?.activityTaskScheduledEventAttributes;
  const started = events.filter((e) => e.activityTaskStartedEventAttributes).at(-1);
  return {
    heartbeatTimeoutSeconds: Number(scheduled?.heartbeatTimeout?.seconds?.toString() ?? 0), // int64: a Long
    lastAttempt: started?.activityTaskStartedEventAttributes?.attempt ?? 0,
  };
}

/** The failure of the shard activity's last attempt while it is still pending, if any. */
async function pendingShardFailure(
  client: Client,
  runId: string,
  shard: number,
): Promise<string | undefined> {
  const description = await client.workflow.getHandle(shardWorkflowId(runId, shard)).describe();
  const pending = description.raw.pendingActivities?.[0];
  return pending?.lastFailure?.message ?? undefined;
}

function handleOf(client: Client, config: RunConfig): WorkflowHandle<typeof datasetRun> {
  return client.workflow.getHandle<typeof datasetRun>(config.run);
}

// Broken files made by hand: a JPEG cut in half, and a PNG header declaring 30000×30000.

async function truncatedJpeg(): Promise<Buffer> {
  const jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#4080c0' } })
    .jpeg()
    .toBuffer();
  return jpeg.subarray(0, Math.floor(jpeg.length / 2));
}

// ---------------------------------------------------------------------------------------------
// Failures of the platform: each case on its own dev stack.

describe('stage 3 survives its platform failing', () => {
  it(
    'a worker killed with SIGKILL mid-shard: the shard is retried on a new worker, every image once',
    async () => {
      const { info, stateDir } = await startOwnStack(cleanups, 'sae-reliability-');
      const client = await connectClient(info, cleanups);
      await inProcessWorkers(info, [TASK_QUEUES.orchestration]);
      const spawnInference = async (name: string): Promise<WorkerProcess> => {
        const worker = await spawnWorkerProcess(info, {
          queues: [TASK_QUEUES.inference],
          logFile: join(stateDir, `${name}.log`),
          stateDir,
        });
        cleanups.push(() => worker.kill());
        return worker;
      };
      const first = await spawnInference('worker-1');

      // One shard of three batches, so that the kill lands between the first batch and the last.
      const fixture = await writeStage3Images(info, 6);
      const config = stage3Config(fixture, info, {
        shardSize: 6,
        batchImages: 2,
        heartbeatTimeout: TEST_HEARTBEAT_TIMEOUT,
      });
      await startRun(client, config);
      await waitFor('the first batch of shard 0', () => midShard(fixture, config.run));
      await first.kill();
      expect(await midShard(fixture, config.run)).toBe(true);

      const second = await spawnInference('worker-2');
      const result = await handleOf(client, config).result();

      expect(result.stage3).toMatchObject({ images: 6, imagesDone: 6, imagesFailed: 0, shards: 1 });
      await expectEveryImageExactlyOnce(fixture, config.run, 1);
      // The run config's heartbeat timeout reached the activity, and the shard finished on a
      // later attempt than the one the kill interrupted.
      const activity = await shardActivityHistory(client, config.run, 0);
      expect(activity.heartbeatTimeoutSeconds).toBe(8);
      expect(activity.lastAttempt, readLog(second.logFile)).toBeGreaterThan(1);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'the S3 server stopped and restarted mid-run: activities fail, are retried, and no image is lost',
    async () => {
      const own = await startOwnStack(cleanups, 'sae-reliability-');
      const client = await connectClient(own.info, cleanups);
      await inProcessWorkers(own.info);
      // One image per batch: many small writes, so the outage hits one.
      const fixture = await writeStage3Images(own.info, 4);
      const config = stage3Config(fixture, own.info, { shardSize: 4, batchImages: 1 });
      await startRun(client, config);
      await waitFor('the first batch of shard 0', () => midShard(fixture, config.run));

      const s3Port = Number(new URL(own.info.s3.endpoint).port);
      await stopProcess(own.stack.s3.process.pid);
      // Keep the server down until the shard activity has failed on it: the outage really hit.
      let failure: string | undefined;
      await waitFor('a shard attempt to fail on the stopped S3 server', async () => {
        failure = await pendingShardFailure(client, config.run, 0);
        return failure !== undefined;
      });
      expect(failure).toMatch(/cannot reach|ECONNREFUSED|ECONNRESET|socket hang up/i);
      clearLockedPorts(); // see restartTemporal
      own.stack.s3 = await startS3Server({
        stateDir: own.stateDir,
        detached: false,
        port: s3Port,
        bucket: 'sa-engine-test',
      });
      expect(own.stack.s3.endpoint.endpoint).toBe(own.info.s3.endpoint); // same port, same data

      const result = await handleOf(client, config).result();
      // An outage is not the images' fault: none of them is recorded as failed.
      expect(result.stage3).toMatchObject({ images: 4, imagesDone: 4, imagesFailed: 0, shards: 1 });
      await expectEveryImageExactlyOnce(fixture, config.run, 1);
    },
    CASE_TIMEOUT_MS,
  );

  it(
    'the Temporal server restarted on its SQLite file mid-run: the run resumes and completes',
    async () => {
      const own = await startOwnStack(cleanups, 'sae-reliability-');
      const client = await connectClient(own.info, cleanups);
      await inProcessWorkers(own.info);
      const fixture = await writeStage3Images(own.info, 6);
      // A shard completion sent while the server is down is lost after the worker's retries; the
      // server then only retries the shard after its heartbeat timeout, so keep that short.
      const config = stage3Config(fixture, own.info, {
        shardSize: 3,
        batchImages: 1,
        heartbeatTimeout: TEST_HEARTBEAT_TIMEOUT,
      });
      await startRun(client, config);
      await waitFor('the first batch of shard 0', () => midShard(fixture, config.run));

      await restartTemporal(own);

      // The old client's connection saw the server go; a fresh one follows the run from here.
      const after = await connectClient(own.info, cleanups);
      const result: DatasetRunResult = await handleOf(after, config).result();
      expect(result.stage3).toMatchObject({ images: 6, imagesDone: 6, imagesFailed: 0, shards: 2 });
      await expectEveryImageExactlyOnce(fixture, config.run, 2);
    },
    CASE_TIMEOUT_MS,
  );
});

// ---------------------------------------------------------------------------------------------
// Bad input and repeated commands: nothing restarts, so these share the suite's stack.

describe('stage 3 on bad input and repeated commands', () => {
  const stack = testStack();
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

  it('corrupt images are listed as failed with their errors, and the rest are segmented', async () => {
    const fixture = await writeStage3Images(stack, 3, {
      'cut.jpg': await truncatedJpeg(),
      'bomb.png': pngBomb(30000, 30000),
    });
    const config = stage3Config(fixture, stack, { shardSize: 5 });
    const result = await (await startRun(client, config)).result();

    expect(result.stage3).toMatchObject({ images: 5, imagesDone: 3, imagesFailed: 2, shards: 1 });
    const lines = (await readShardResult(fixture.out, config.run, 0))!;
    const byName = (name: string) => lines.find((l) => l.key.endsWith(`/${name}`))!;
    expect(byName('cut.jpg')).toMatchObject({ status: 'failed', count: 0 });
    expect(byName('cut.jpg').error).toMatch(/^CorruptImageError: cut\.jpg: corrupt or truncated image/);
    expect(byName('bomb.png')).toMatchObject({ status: 'failed', count: 0 });
    expect(byName('bomb.png').error).toMatch(
      /^ImageTooLargeError: bomb\.png: the header declares 30000×30000/,
    );
    const done = lines.filter((l) => l.status === 'done');
    expect(done).toHaveLength(3);
    // Failed images get no mask file; the dataset lists them with their errors.
    const masks = await keysUnder(fixture.out, runLayout.masksPrefix(config.run));
    expect(masks.sort()).toEqual(done.map((l) => runLayout.masks(config.run, l.id)).sort());
    const failed = (await fixture.out.get(runLayout.datasetFailed(config.run))).toString('utf8');
    const failedLines = failed
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { image: string; error: string });
    expect(failedLines.map((l) => l.image).sort()).toEqual(
      [byName('bomb.png').key, byName('cut.jpg').key].sort(),
    );
  });

  it('a second run with the same id is refused, while running and after, and never executes', async () => {
    const fixture = await writeStage3Images(stack, 1);
    const config = stage3Config(fixture, stack);
    const handle = await startRun(client, config);

    const whileRunning = await startRun(client, config).catch((err: unknown) => err);
    expect(whileRunning).toBeInstanceOf(RunAlreadyExistsError);
    expect((whileRunning as Error).message).toBe(
      `run "${config.run}" already exists on this Temporal server and is running; watch it with ` +
        `\`sa-engine status ${config.run}\`, or give the new run another \`run:\` id.`,
    );
    await handle.result();
    const afterwards = startRun(client, config);
    await expect(afterwards).rejects.toBeInstanceOf(RunAlreadyExistsError);
    await expect(afterwards).rejects.toThrow(/has completed and its outputs are kept/);
    const { runId } = await handle.describe();

    const executions: string[] = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${config.run}'` }))
      executions.push(wf.runId);
    expect(executions).toEqual([runId]);
  });
});
