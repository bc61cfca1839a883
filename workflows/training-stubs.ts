// The activity stubs the retraining triggers share (stage 1's SAM retraining, stage 2's SAM
// version and its detector training): one stub each, with one set of timeouts and retries.
import { proxyActivities } from '@temporalio/workflow';
import type { ModelActivities } from '../activities/models.ts';
import type { Stage1Activities } from '../activities/stage1.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { MODEL_REGISTRY_ERRORS, retryPolicy, STAGE1_ERRORS } from './retry-policies.ts';

export const { ensureChampion } = proxyActivities<ModelActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  // Seeding uploads the run's model package into the registry once.
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '2 minutes',
  retry: retryPolicy(MODEL_REGISTRY_ERRORS),
});

export const { buildTrainingSet } = proxyActivities<Stage1Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '30 minutes',
  retry: retryPolicy(STAGE1_ERRORS),
});
