// Stage 3 against work that never finishes: an image that kills its worker process every time it
// is tried (a poison image), and a segmenter call that hangs. Real Temporal dev server, real S3
// server, real worker processes and the reference ONNX model; each case on the suite's stack.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection } from '@temporalio/worker';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { startRun } from '../../client/runs.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { createSegmenterFactory } from '../../lib/stage3/segmenter.ts';
import { readShardEntries } from '../../lib/stage3/shard-plan.ts';
import { readShardResult, type ImageSegmenter } from '../../lib/stage3/shard-runner.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { createActivities } from '../../workers/activities.ts';
import { createWorker } from '../../workers/create-worker.ts';
import { shardWorkflowId } from '../../workflows/stage3.ts';
import { readLog } from '../helpers/processes.ts';
import { testStack } from '../helpers/stack.ts';
import {
  keysUnder,
  stage3Config,
  startTestWorkers,
  storeOptionsFor,
  writeStage3Images,
} from '../helpers/stage3-fixture.ts';

const CASE_TIMEOUT_MS = 280_000;
const POISON_WORKER = resolve(import.meta.dirname, '../helpers/poison-worker.ts');

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch((err) => console.warn('cleanup:', err));
});

async function connectClient(): Promise<Client> {
  const stack = testStack();
  const connection = await Connection.connect({ address: stack.temporal.address });
  cleanups.push(() => connection.close());
  return new Client({ connection, namespace: stack.temporal.namespace });
}

/** Attempts of the shard activity as recorded in its started events, with the failure before each. */
async function shardAttempts(
  client: Client,
  runId: string,
): Promise<{ attempt: number; lastFailure?: { message?: string | null; timeoutType?: unknown } }[]> {
  const history = await client.workflow.getHandle(shardWorkflowId(runId, 0)).fetchHistory();
  return (history.events ?? [])
    .flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes] : []))
    .map((a) => ({
      attempt: a.attempt ?? 0,
      lastFailure: a.lastFailure
        ? {
            message: a.lastFailure.message,
            timeoutType: a.lastFailure.timeoutFailureInfo?.timeoutType,
          }
        : undefined,
    }));
}

interface PoisonWorker {
  child: ChildProcess;
  exited: Promise<string>;
}

/** A real worker process (test/helpers/poison-worker.ts) that SIGKILLs itself on `poison`. */
async function spawnPoisonWorker(poison: string, logFile: string): Promise<PoisonWorker> {
  const child = spawn(process.execPath, ['--import', 'tsx', POISON_WORKER], {
    env: {
      ...process.env,
      SAE_TEST_STACK: JSON.stringify(testStack()),
      SAE_TEST_POISON_FILE: poison,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const exited = new Promise<string>((r) =>
    child.once('exit', (code, signal) => r(signal ?? `exit ${code}`)),
  );
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  await new Promise<void>((resolvePromise, reject) => {
    let seen = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      if (seen.includes('poison worker ready')) resolvePromise();
    });
    void exited.then((how) =>
      reject(new Error(`poison worker exited (${how}) before it was ready\n${readLog(logFile)}`)),
    );
  });
  return { child, exited };
}

describe('stage 3 with an image that kills its worker every time', () => {
  it(
    'the image is recorded as failed after 3 deaths in a row, and its batch is otherwise whole',
    async () => {
      const stack = testStack();
      const client = await connectClient();
      const orchestration = await startTestWorkers(stack, [TASK_QUEUES.orchestration]);
      cleanups.push(() => orchestration.shutdown());
      const logDir = mkdtempSync(join(tmpdir(), 'sae-poison-'));
      cleanups.push(async () => rmSync(logDir, { recursive: true, force: true }));

      // Lists between synth-000001 and synth-000002: it shares its batch with a good image.
      const POISON = 'synth-000001-poison.png';
      const poisonBytes = await sharp({
        create: { width: 64, height: 48, channels: 3, background: '#c04040' },
      })
        .png()
        .toBuffer();
      const fixture = await writeStage3Images(stack, 3, { [POISON]: poisonBytes });
      const config = stage3Config(fixture, stack, { shardSize: 4, batchImages: 2, heartbeatTimeout: '6s' });
      const handle = await startRun(client, config);

      // Keep one worker process up: each one that dies on the poison is replaced, as a pool would.
      const deaths: string[] = [];
      let finished = false;
      const result = handle.result().finally(() => (finished = true));
      const keeper = (async () => {
        for (let n = 1; !finished && n <= 8; n++) {
          const worker = await spawnPoisonWorker(POISON, join(logDir, `worker-${n}.log`));
          const how = await Promise.race([worker.exited, result.then(() => 'run finished')]);
          if (how === 'run finished') break;
          deaths.push(how);
        }
      })();
      const outcome = await result;
      await keeper;

      // Four deaths: the first attempt is not watched; the next three pin the deaths on the image.
      expect(deaths).toEqual(['SIGKILL', 'SIGKILL', 'SIGKILL', 'SIGKILL']);
      expect(outcome.stage3).toMatchObject({ images: 4, imagesDone: 3, imagesFailed: 1, shards: 1 });
      const entries = await readShardEntries(fixture.out, config.run, 0);
      const lines = (await readShardResult(fixture.out, config.run, 0))!;
      expect(lines.map((l) => l.id)).toEqual(entries.map((e) => e.id)); // every image once, in order
      const poisoned = lines.find((l) => l.key.endsWith(`/${POISON}`))!;
      expect(poisoned).toMatchObject({ status: 'failed', count: 0 });
      expect(poisoned.error).toBe(
        `WorkerCrashError: ${fixture.images.uri(POISON)} crashed (or hung) the worker 3 times in a row; ` +
          'recorded as failed and not tried again',
      );
      const done = lines.filter((l) => l.status === 'done');
      expect(done).toHaveLength(3);
      expect(await keysUnder(fixture.out, runLayout.shardPartsPrefix(config.run, 0))).toEqual([]);
      const masks = await keysUnder(fixture.out, runLayout.masksPrefix(config.run));
      expect(masks.sort()).toEqual(done.map((l) => runLayout.masks(config.run, l.id)).sort());
      expect((await shardAttempts(client, config.run)).at(-1)?.attempt).toBe(5);
    },
    CASE_TIMEOUT_MS,
  );
});

describe('stage 3 with a segmenter call that hangs', () => {
  it(
    'the shard stops heartbeating, times out on its heartbeat, and the retry finishes the shard',
    async () => {
      const stack = testStack();
      const client = await connectClient();
      const orchestration = await startTestWorkers(stack, [TASK_QUEUES.orchestration]);
      cleanups.push(() => orchestration.shutdown());

      // The first image hangs on its first try (a model call that never returns); later calls are
      // real. The stall limit is well above what one real image takes here (a few seconds).
      const storeOptions = storeOptionsFor(stack);
      const real = createSegmenterFactory({ storeOptions });
      let hung = 0;
      const segmenterFor = async (modelUri: string, settings: object): Promise<ImageSegmenter> => {
        const inner = await real(modelUri, settings);
        return {
          modelId: inner.modelId,
          segment(bytes, image, progress) {
            if (hung === 0) {
              hung += 1;
              return new Promise(() => {});
            }
            return inner.segment(bytes, image, progress);
          },
        };
      };
      const connection = await NativeConnection.connect({ address: stack.temporal.address });
      cleanups.push(() => connection.close());
      const inference = await createWorker({
        connection,
        namespace: stack.temporal.namespace,
        taskQueue: TASK_QUEUES.inference,
        // Every activity of the pool: the run's dataset shards come to this queue too.
        activities: createActivities({ storeOptions, segmenterFor, stallTimeoutMs: 12_000 }),
        runWorkflows: false,
        maxConcurrentActivityTaskExecutions: 1,
      });
      const running = inference.run();
      cleanups.push(async () => {
        if (inference.getState() === 'RUNNING') inference.shutdown();
        await running;
      });

      const fixture = await writeStage3Images(stack, 2);
      const config = stage3Config(fixture, stack, { shardSize: 2, batchImages: 2, heartbeatTimeout: '4s' });
      const started = Date.now();
      const outcome = await (await startRun(client, config)).result();

      expect(hung).toBe(1);
      expect(outcome.stage3).toMatchObject({ images: 2, imagesDone: 2, imagesFailed: 0, shards: 1 });
      // Attempt 1 ended on Temporal's heartbeat timeout (before the change, the timer kept
      // beating for a hung call and the shard waited out its 24 h start-to-close timeout).
      const attempts = await shardAttempts(client, config.run);
      expect(attempts.map((a) => a.attempt)).toEqual([2]); // started events keep the last attempt only
      expect(attempts[0]!.lastFailure?.timeoutType, JSON.stringify(attempts)).toBe(
        temporal.api.enums.v1.TimeoutType.TIMEOUT_TYPE_HEARTBEAT,
      );
      expect(Date.now() - started).toBeLessThan(120_000);
      const lines = (await readShardResult(fixture.out, config.run, 0))!;
      expect(lines.every((l) => l.status === 'done')).toBe(true);
      // The stall was pinned on the image (a marker for the retry) and cleared once it got through.
      expect(await keysUnder(fixture.out, runLayout.shardPartsPrefix(config.run, 0))).toEqual([]);
    },
    CASE_TIMEOUT_MS,
  );
});
