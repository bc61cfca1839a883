// Proves that each worker pool can reach the run's storage: on every task queue asked for, one
// activity writes a probe object, reads it back, compares and deletes it. `sa-engine doctor` runs it
// before a long run so a misconfigured worker fails in seconds, not hours in.
import { proxyActivities, setWorkflowOptions, workflowInfo } from '@temporalio/workflow';
import type { StorageCheckActivities } from '../activities/storage-check.ts';
import type { ProbeResult } from '../activities/storage-check.ts';
import { PROBE_STORAGE_ERRORS, retryPolicy } from './retry-policies.ts';

export interface StorageCheckInput {
  /** Store URI, e.g. s3://bucket/prefix or file:///data/sa-engine. */
  storeUri: string;
  taskQueues: string[];
}

export interface StorageCheckResult {
  probes: (ProbeResult & { taskQueue: string })[];
}

export async function storageCheck(input: StorageCheckInput): Promise<StorageCheckResult> {
  const probes = await Promise.all(
    input.taskQueues.map(async (taskQueue) => {
      const { probeStorage } = proxyActivities<StorageCheckActivities>({
        taskQueue,
        startToCloseTimeout: '1 minute',
        // A check: a few tries, then it reports the failure instead of waiting for the store.
        retry: retryPolicy(PROBE_STORAGE_ERRORS, { maximumAttempts: 3 }),
      });
      const result = await probeStorage({
        storeUri: input.storeUri,
        probeKey: `_sa-engine/probes/${taskQueue}.bin`,
      });
      return { ...result, taskQueue };
    }),
  );
  return { probes };
}

// A check lasts seconds and keeps no state worth pinning: it may run on whichever build is current.
// Every other workflow stays on the build it started on (workers/create-worker.ts). An unversioned
// worker (the dev stack's: a build id but no deployment name) must not name a behaviour at all, or
// the server refuses the workflow task.
setWorkflowOptions(
  () =>
    workflowInfo().currentDeploymentVersion?.deploymentName ? { versioningBehavior: 'AUTO_UPGRADE' } : {},
  storageCheck,
);
