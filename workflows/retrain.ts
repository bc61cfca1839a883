// A retrain (id `<run>/retrain-<n>`): a new version of the model, trained on the training queue,
// measured against the champion on the same held-out set, and promoted only through the gate
// (lib/models/gate.ts). Every version stays in the registry, refused ones with their reason.
//
//   claim v<k> in the registry → trainSam writes the package into it → evaluateSam, the candidate
//   and then the champion, on one set → the gate → (promoted: the AMG's thresholds calibrated on
//   that set into its model.json) → the version's lineage (complete) → champion moves
//
// The claim carries the workflow id, so a retried workflow task or a continued run gets the same
// version, and a rerun (or reset) of a retrain whose version is already complete trains nothing
// again: it returns that version's recorded decision. The champion moves only from the version
// the retrain started from, so two retrains that finish together cannot both win.
import { proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { AmgCalibrationRecord } from '../lib/amg/calibration.ts';
import type { CalibrationActivities } from '../activities/calibration.ts';
import type { ModelActivities } from '../activities/models.ts';
import type { TrainingActivities } from '../activities/training.ts';
import { CHAMPION, gateDecision, type GateSettings } from '../lib/models/gate.ts';
import type { Lineage } from '../lib/models/registry.ts';
import {
  EvaluateSamResultSchema,
  TrainSamResultSchema,
  type EvaluateSamResult,
  type TrainSamInput,
} from '../lib/training/contract.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { checked } from './activity-results.ts';
import { finishPromotion, promote } from './promotion.ts';
import { CALIBRATION_ERRORS, MODEL_REGISTRY_ERRORS, retryPolicy, TRAINING_ERRORS } from './retry-policies.ts';
import { SAE_MODEL } from './search-attributes.ts';

const { trainSam, evaluateSam } = proxyActivities<TrainingActivities>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '12 hours',
  heartbeatTimeout: '5 minutes',
  // Hours of GPU time an attempt: a few tries, then the workflow fails and says why.
  retry: retryPolicy(TRAINING_ERRORS, { maximumAttempts: 3 }),
});

const { claimModelVersion, resolveModelAlias, completeModelVersion } = proxyActivities<ModelActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '1 minute',
  retry: retryPolicy(MODEL_REGISTRY_ERRORS),
});

const { calibrateModelVersion } = proxyActivities<CalibrationActivities>({
  taskQueue: TASK_QUEUES.inference,
  // The AMG over the evaluation images, one heartbeat per image.
  startToCloseTimeout: '4 hours',
  heartbeatTimeout: '10 minutes',
  retry: retryPolicy(CALIBRATION_ERRORS, { maximumAttempts: 3 }),
});

export interface RetrainInput {
  /** The registry's root URI; the trainer writes the version's files into it. */
  registry: string;
  modelName: string;
  /** How to train: everything but where the version goes, which the registry decides. */
  train: Omit<TrainSamInput, 'registry' | 'modelName' | 'version' | 'parent'>;
  /** The held-out set both models are measured on (a manifest; its holdout split when it has one). */
  evaluation: { storage: string; dataset: string; maxImages?: number; maxClicks?: number };
  gate: GateSettings;
  /** Why this retrain runs, for the lineage ("stage1 round 2: 600 masks since v3"). */
  trigger: string;
  /**
   * Calibrate a promoted version's AMG thresholds on the evaluation set's held-out images (absent:
   * not calibrated, and stage 3 cannot use it with `thresholds: model`).
   */
  calibration?: { maxImages: number; pointsPerSide: number };
}

export interface RetrainResult {
  version: number;
  /** The version's folder URI: a model package. */
  uri: string;
  parent: number | null;
  metrics: EvaluateSamResult;
  championMetrics: EvaluateSamResult | null;
  promoted: boolean;
  reason: string;
  /**
   * The thresholds measured for a promoted version (when the input asked for them); `inheritedFrom`:
   * the parent's, kept because no pair kept a correct mask on the held-out images; null: neither.
   */
  amgCalibration?: { predIouThresh: number; stabilityScoreThresh: number; inheritedFrom?: string } | null;
}

export async function retrainSam(input: RetrainInput): Promise<RetrainResult> {
  const { registry, modelName: name } = input;
  const ref = { registry, name };
  const parent = await resolveModelAlias({ ...ref, alias: CHAMPION });
  const claimed = await claimModelVersion({ ...ref, idempotencyKey: workflowInfo().workflowId });
  const { version } = claimed;
  upsertSearchAttributes([{ key: SAE_MODEL, value: `${name}@v${version}` }]);
  if (claimed.done) return finishedEarlier(input, claimed.done, claimed.uri, parent);

  const trained = checked(
    TrainSamResultSchema,
    await trainSam({
      ...input.train,
      registry,
      modelName: name,
      version,
      ...(parent !== null ? { parent: `${name}/v${parent}` } : {}),
    }),
    'trainSam',
  );
  const evaluate = async (model: string) =>
    checked(
      EvaluateSamResultSchema,
      await evaluateSam({
        ...input.evaluation,
        registry,
        model,
        maxClicks: input.evaluation.maxClicks ?? 20,
      }),
      'evaluateSam',
    );
  const metrics = await evaluate(`${name}/v${version}`);
  const championMetrics = parent !== null ? await evaluate(`${name}/v${parent}`) : null;
  const decision = gateDecision(metrics, championMetrics, input.gate);
  // Before completion: a version's files (and the lineage's hashes of them) never change after it.
  const calibrated =
    decision.promoted && input.calibration
      ? await calibrateModelVersion({
          modelUri: claimed.uri,
          storage: input.evaluation.storage,
          dataset: input.evaluation.dataset,
          ...input.calibration,
          parent: parent !== null ? { ...ref, version: parent } : null,
        })
      : undefined;
  const files = calibrated
    ? trained.files.map((f) => (f.name === 'model.json' ? calibrated.modelJson : f))
    : trained.files;

  await completeModelVersion({
    ...ref,
    version,
    lineage: {
      parent: parent !== null ? { name, version: parent } : null,
      trainingSet: { uri: trained.trainingSetUri, sha256: trained.trainingSetSha256 },
      steps: trained.steps,
      trigger: input.trigger,
      metrics: { [input.evaluation.dataset]: metrics },
      gate: {
        promoted: decision.promoted,
        reason: decision.reason,
        champion: parent !== null ? { name, version: parent } : null,
        championMetrics,
      },
      idempotencyKey: workflowInfo().workflowId,
      files,
    },
  });
  const { promoted, reason } = decision.promoted
    ? await promote(ref, version, parent, decision.reason)
    : decision;
  const amgCalibration = calibrated && calibrationSummary(calibrated.calibration);
  return {
    version,
    uri: claimed.uri,
    parent,
    metrics,
    championMetrics,
    promoted,
    reason,
    ...(amgCalibration !== undefined ? { amgCalibration } : {}),
  };
}

function calibrationSummary(record: AmgCalibrationRecord | null): RetrainResult['amgCalibration'] {
  if (record === null) return null;
  return {
    predIouThresh: record.pred_iou_thresh,
    stabilityScoreThresh: record.stability_score_thresh,
    ...(record.inherited_from !== undefined ? { inheritedFrom: record.inherited_from } : {}),
  };
}

/**
 * The result of a retrain whose version an earlier run of this workflow id completed: its lineage
 * holds the figures and the gate's decision (and the promotion it may not have got to make).
 */
async function finishedEarlier(
  input: RetrainInput,
  lineage: Lineage,
  uri: string,
  champion: number | null,
): Promise<RetrainResult> {
  const metrics = checked(
    EvaluateSamResultSchema,
    lineage.metrics?.[input.evaluation.dataset],
    'the lineage',
  );
  const championMetrics = lineage.gate?.championMetrics
    ? checked(EvaluateSamResultSchema, lineage.gate.championMetrics, 'the lineage')
    : null;
  const parent = lineage.parent?.version ?? null;
  const decision = await finishPromotion(
    { registry: input.registry, name: input.modelName },
    lineage,
    champion,
  );
  return { version: lineage.version, uri, parent, metrics, championMetrics, ...decision };
}
