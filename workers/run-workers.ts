// Runs one worker per task queue in this process until it is told to stop. `sa-engine worker`
// and the embedded demo both come through here.
import { NativeConnection, type Worker, type WorkerOptions } from '@temporalio/worker';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { createActivities, type ActivityDeps } from './activities.ts';
import { createWorker } from './create-worker.ts';
import { installQuietRuntime } from './runtime.ts';

export interface RunWorkersOptions extends ActivityDeps {
  address: string;
  namespace: string;
  queues: string[];
  /** Activities at once per queue; the inference pool defaults to 1 (one AMG saturates the cores). */
  concurrency?: Partial<Record<string, number>>;
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export interface RunningWorkers {
  workers: Worker[];
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
  const connection = await NativeConnection.connect({ address: opts.address });
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
        maxConcurrentActivityTaskExecutions:
          opts.concurrency?.[taskQueue] ?? DEFAULT_CONCURRENCY[taskQueue] ?? 4,
      }),
    ),
  );
  const done = Promise.all(workers.map((w) => w.run())).then(() => connection.close());
  return {
    workers,
    done,
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await done;
    },
  };
}
