// Retraining: train a new model version on the training queue, evaluate it on a held-out set, and
// promote it only if it beats the model it started from (DESIGN.md stage 1).
import { proxyActivities } from '@temporalio/workflow';
import type { EvaluateSamResult, TrainingActivities, TrainSamInput } from '../activities/training.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { retryPolicy, TRAINING_ERRORS } from './retry-policies.ts';

const { trainSam, evaluateSam } = proxyActivities<TrainingActivities>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '12 hours',
  heartbeatTimeout: '5 minutes',
  // Hours of GPU time an attempt: a few tries, then the workflow fails and says why.
  retry: retryPolicy(TRAINING_ERRORS, { maximumAttempts: 3 }),
});

export interface RetrainInput {
  train: TrainSamInput;
  /** Held-out manifest key; evaluation uses its holdout split. */
  heldOut: string;
  maxEvalImages: number;
  /** Figures of the model training started from; null = promote whatever trains. */
  baseline: EvaluateSamResult | null;
}

export interface RetrainResult {
  model: string;
  metrics: EvaluateSamResult;
  promoted: boolean;
}

export async function retrainSam(input: RetrainInput): Promise<RetrainResult> {
  const trained = await trainSam(input.train);
  const metrics = await evaluateSam({
    storage: input.train.storage,
    model: trained.model,
    dataset: input.heldOut,
    maxImages: input.maxEvalImages,
    maxClicks: 20,
  });
  const score = (m: EvaluateSamResult | null) => m?.miou_1click ?? -1;
  const promoted = input.baseline === null || score(metrics) > score(input.baseline);
  return { model: trained.model, metrics, promoted };
}
