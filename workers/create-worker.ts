// Builds a Temporal worker for one task queue. Orchestration workers also run workflows; the
// inference and training pools run activities only, so they never load the workflow bundle.
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

export interface CreateWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  activities: object;
  runWorkflows: boolean;
  /** A prebuilt bundle (tests share one) instead of bundling workflows/ again. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  maxConcurrentActivityTaskExecutions?: number;
}

export async function createWorker(opts: CreateWorkerOptions): Promise<Worker> {
  const workflows: Partial<WorkerOptions> = !opts.runWorkflows
    ? {}
    : opts.workflowBundle
      ? { workflowBundle: opts.workflowBundle }
      : { workflowsPath: WORKFLOWS_PATH };
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    activities: opts.activities,
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivityTaskExecutions,
    ...workflows,
  });
}
