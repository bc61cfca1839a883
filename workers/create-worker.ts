// Builds a Temporal worker for one task queue. Orchestration workers also run workflows; the
// inference and training pools run activities only, so they never load the workflow bundle.
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Worker Versioning: which build of which deployment this worker is (docs/deploy.md "Rollout"). */
export interface WorkerVersion {
  deploymentName: string;
  buildId: string;
}

export interface CreateWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  activities: object;
  runWorkflows: boolean;
  /** A prebuilt bundle (tests share one) instead of bundling workflows/ again. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  maxConcurrentActivityTaskExecutions?: number;
  /** Unset: an unversioned worker, as on the dev stack. */
  version?: WorkerVersion;
  /** After SIGTERM, how long activities in flight may take to finish before they are cancelled. */
  shutdownGraceMs?: number;
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
    // The SDK spreads these over its defaults: an explicit undefined would replace them.
    ...(opts.shutdownGraceMs !== undefined && { shutdownGraceTime: opts.shutdownGraceMs }),
    // Runs are long (annotation rounds wait on people for days): a workflow stays on the build it
    // started on, and a new build takes only new runs. Short workflows opt into AUTO_UPGRADE.
    ...(opts.version && {
      workerDeploymentOptions: {
        useWorkerVersioning: true,
        version: opts.version,
        defaultVersioningBehavior: 'PINNED',
      },
    }),
    ...workflows,
  });
}
