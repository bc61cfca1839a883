// Runs one worker per task queue in this process until it is told to stop. `sa-engine worker`
// and the embedded demo both come through here.
import { NativeConnection, type Worker, type WorkerOptions } from '@temporalio/worker';
import type { TemporalAuth } from '../lib/temporal-auth.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { createActivities, type ActivityDeps } from './activities.ts';
import { createWorker, type WorkerVersion } from './create-worker.ts';
import { installQuietRuntime } from './runtime.ts';

export interface RunWorkersOptions extends ActivityDeps {
  address: string;
  namespace: string;
  /** mTLS or an API key (lib/temporal-auth.ts); default plaintext. */
  auth?: TemporalAuth;
  queues: string[];
  /** Activities at once per queue; the inference pool defaults to 1 (one AMG saturates the cores). */
  concurrency?: Partial<Record<string, number>>;
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Worker Versioning: the deployment and build these workers belong to. */
  version?: WorkerVersion;
  /** After shutdown is asked for (SIGTERM), how long activities in flight may run on; default 0. */
  shutdownGraceMs?: number;
}

export interface RunningWorkers {
  workers: Worker[];
  /** Every worker polls (a readiness probe's answer); false once shutdown began. */
  ready(): boolean;
  /** Resolves when every worker has stopped; rejects if one fails. */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

const DEFAULT_CONCURRENCY: Record<string, number> = {
  [TASK_QUEUES.orchestration]: 20,
  [TASK_QUEUES.inference]: 1,
};

export async function startWorkers(opts: RunWorkersOptions): Promise<RunningWorkers> {
  installQuietRuntime();
  const connection = await NativeConnection.connect({ address: opts.address, ...opts.auth });
  const activities = createActivities(opts);
  const workers = await Promise.all(
    opts.queues.map((taskQueue) =>
      createWorker({
        connection,
        namespace: opts.namespace,
        taskQueue,
        activities,
        runWorkflows: taskQueue === TASK_QUEUES.orchestration,
        workflowBundle: opts.workflowBundle,
        version: opts.version,
        shutdownGraceMs: opts.shutdownGraceMs,
        maxConcurrentActivityTaskExecutions:
          opts.concurrency?.[taskQueue] ?? DEFAULT_CONCURRENCY[taskQueue] ?? 4,
      }),
    ),
  );
  const done = Promise.all(workers.map((w) => w.run())).then(() => connection.close());
  return {
    workers,
    ready: () => workers.every((w) => w.getState() === 'RUNNING'),
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
  };
}
