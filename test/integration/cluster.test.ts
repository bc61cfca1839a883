// A cluster in miniature (docs/deploy.md): every pool a process of its own, as pods run them —
// one orchestration worker, two inference workers, the Python trainer — on a real Temporal server
// and S3 server. During a stage-3 run the cluster does what Kubernetes does to pods: one inference
// worker is drained (SIGTERM, as on a scale-down or rollout), a new one joins (scale-up), one dies
// (SIGKILL, a lost node). Nothing may be lost or done twice.
//
// The trainer is a member of the cluster but idle here: stage 3 schedules nothing on the training
// queue; test/integration/trainer-worker.test.ts and trainer/tests cover its own SIGTERM drain.
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import getPort from 'get-port';
import { afterEach, describe, expect, it } from 'vitest';
import { startRun } from '../../client/runs.ts';
import type { StackInfo } from '../../infra/stack-info.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { datasetRun } from '../../workflows/dataset-run.ts';
import { shardWorkflowId } from '../../workflows/stage3.ts';
import { connectClient, startOwnStack, type Cleanups } from '../helpers/own-stack.ts';
import {
  readLog,
  spawnTrainerProcess,
  spawnWorkerProcess,
  type WorkerProcess,
} from '../helpers/processes.ts';
import {
  expectEveryImageExactlyOnce,
  midShard,
  stage3Config,
  writeStage3Images,
  type Stage3Fixture,
} from '../helpers/stage3-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const IMAGES = 24;
const SHARD_SIZE = 4;
const SHARDS = IMAGES / SHARD_SIZE;

const cleanups: Cleanups = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch((err) => console.warn('cleanup:', err));
});

/** One attempt of a shard's activity, from the shard workflow's history. */
interface ShardAttempt {
  attempt: number;
  /** The worker's identity, `pid@host` by default. */
  identity: string;
}

async function shardAttempts(client: Client, runId: string, shard: number): Promise<ShardAttempt[]> {
  const history = await client.workflow.getHandle(shardWorkflowId(runId, shard)).fetchHistory();
  return (history.events ?? []).flatMap((event) => {
    const started = event.activityTaskStartedEventAttributes;
    return started ? [{ attempt: started.attempt ?? 0, identity: started.identity ?? '' }] : [];
  });
}

/** The shard whose activity this worker process runs now, mid-shard (a batch on storage). */
async function shardHeldBy(
  client: Client,
  fixture: Stage3Fixture,
  runId: string,
  worker: WorkerProcess,
): Promise<number | undefined> {
  for (let shard = 0; shard < SHARDS; shard++) {
    const pending = await client.workflow
      .getHandle(shardWorkflowId(runId, shard))
      .describe()
      .then(
        (d) => d.raw.pendingActivities?.[0],
        () => undefined,
      );
    const runningHere = pending?.lastWorkerIdentity?.startsWith(`${worker.child.pid}@`);
    if (runningHere && (await midShard(fixture, runId, shard))) return shard;
  }
  return undefined;
}

async function readiness(port: number): Promise<number> {
  return fetch(`http://127.0.0.1:${port}/readyz`).then(
    (res) => res.status,
    () => 0, // closed: the process is gone
  );
}

describe('a cluster of worker processes', () => {
  it('drains a SIGTERMed inference worker, lets a new one take work, resumes a SIGKILLed one elsewhere: every image once', async () => {
    const own = await startOwnStack(cleanups, 'sae-cluster-');
    const client = await connectClient(own.info, cleanups);
    const spawn = async (name: string, queues: string[], args: string[] = []) => {
      const worker = await spawnWorkerProcess(own.info, {
        queues,
        logFile: join(own.stateDir, `${name}.log`),
        stateDir: own.stateDir,
        args,
      });
      cleanups.push(() => worker.kill());
      return worker;
    };
    // Long enough for a shard of four images on a shared CPU; a pod's terminationGracePeriod
    // is set above it (infra/helm/sa-engine).
    const inferenceArgs = ['--onnx-threads', '1', '--shutdown-grace', '120'];
    const drainedPort = await getPort();

    await spawn('orchestration', [TASK_QUEUES.orchestration]);
    const drained = await spawn(
      'inference-1',
      [TASK_QUEUES.inference],
      [...inferenceArgs, ...['--health-port', String(drainedPort)]],
    );
    const killed = await spawn('inference-2', [TASK_QUEUES.inference], inferenceArgs);
    const trainer = await spawnTrainerProcess(own.info, {
      logFile: join(own.stateDir, 'trainer.log'),
      stateDir: own.stateDir,
    });
    cleanups.push(() => trainer.kill());
    expect(await readiness(drainedPort)).toBe(200);

    const fixture = await writeStage3Images(own.info, IMAGES);
    const config = stage3Config(fixture, own.info as StackInfo, {
      shardSize: SHARD_SIZE,
      batchImages: 1,
      maxConcurrentShards: 2,
      heartbeatTimeout: '8s',
    });
    await startRun(client, config);

    // Scale-down or rollout: SIGTERM while a shard is half done. The worker stops polling (its
    // readiness says so) and finishes the shard in hand before it exits.
    let drainedShard: number | undefined;
    await waitFor('inference-1 mid-shard', async () => {
      drainedShard = await shardHeldBy(client, fixture, config.run, drained);
      return drainedShard !== undefined;
    });
    const drainedExit = drained.terminate();
    await waitFor('inference-1 to report not ready', async () => (await readiness(drainedPort)) !== 200);

    // Scale-up: a new worker joins and takes work.
    const joined = await spawn('inference-3', [TASK_QUEUES.inference], inferenceArgs);
    expect(await drainedExit, readLog(drained.logFile)).toBe(0);

    // A node is lost: SIGKILL mid-shard. The shard's heartbeat timeout hands it to another worker,
    // which resumes after the last batch the dead one stored.
    let killedShard: number | undefined;
    await waitFor('inference-2 mid-shard', async () => {
      killedShard = await shardHeldBy(client, fixture, config.run, killed);
      return killedShard !== undefined;
    });
    await killed.kill();

    const result = await client.workflow.getHandle<typeof datasetRun>(config.run).result();
    expect(result.stage3).toMatchObject({
      images: IMAGES,
      imagesDone: IMAGES,
      imagesFailed: 0,
      shards: SHARDS,
    });
    await expectEveryImageExactlyOnce(fixture, config.run, SHARDS);

    const identityOf = (worker: WorkerProcess) => `${worker.child.pid}@`;
    // The drained shard ran once, on the drained worker: nothing was retried from scratch.
    const drainedAttempts = await shardAttempts(client, config.run, drainedShard!);
    expect(drainedAttempts).toHaveLength(1);
    expect(drainedAttempts[0]).toMatchObject({ attempt: 1 });
    expect(drainedAttempts[0]!.identity.startsWith(identityOf(drained))).toBe(true);
    // The killed worker's shard finished on a later attempt, on the worker that joined.
    const killedAttempts = await shardAttempts(client, config.run, killedShard!);
    expect(killedAttempts.at(-1)!.attempt).toBeGreaterThan(1);
    expect(killedAttempts.at(-1)!.identity.startsWith(identityOf(joined)), readLog(joined.logFile)).toBe(
      true,
    );
    // The trainer stayed a healthy member throughout.
    expect(trainer.child.exitCode).toBeNull();
  }, 600_000);
});
