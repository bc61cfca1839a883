// A detector retrain (id `<run>/detector-retrain-<n>`): stage 2's box detector trained on the
// boxes of a training set, on the embeddings of the SAM version the run uses, measured against the
// champion on one held-out set and promoted only through the box-AP gate (lib/models/gate.ts).
//
//   champion → (its figures on this SAM's embeddings) → claim v<k> → trainDetector, from the
//   champion when it reads the same encoder → evaluateDetector → the gate → lineage → champion moves
//
// A detector reads one SAM encoder's embeddings. When the run's SAM has a new encoder, the champion
// cannot be measured on it (evaluateDetector refuses: DetectorMismatch), so the candidate trains
// from scratch and replaces it without a comparison, as the reason says. As in retrainSam, the
// claim carries the workflow id, and a rerun of a complete version trains nothing again (it
// finishes a promotion the first run decided but did not make, workflows/promotion.ts).
import { proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { ModelActivities } from '../activities/models.ts';
import type { TrainingActivities } from '../activities/training.ts';
import { CHAMPION, detectorGateDecision, type DetectorGateSettings } from '../lib/models/gate.ts';
import {
  EvaluateDetectorResultSchema,
  TrainDetectorResultSchema,
  type EvaluateDetectorResult,
  type TrainDetectorInput,
} from '../lib/training/contract.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { checked, isActivityError } from './activity-results.ts';
import { finishPromotion, promote } from './promotion.ts';
import { MODEL_REGISTRY_ERRORS, retryPolicy, TRAINING_ERRORS } from './retry-policies.ts';
import { SAE_MODEL } from './search-attributes.ts';

const { trainDetector, evaluateDetector } = proxyActivities<TrainingActivities>({
  taskQueue: TASK_QUEUES.training,
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '5 minutes',
  retry: retryPolicy([...TRAINING_ERRORS, 'DetectorMismatch'], { maximumAttempts: 3 }),
});

const { claimModelVersion, resolveModelAlias, completeModelVersion } = proxyActivities<ModelActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '1 minute',
  retry: retryPolicy(MODEL_REGISTRY_ERRORS),
});

export interface RetrainDetectorInput {
  /** The registry's root URI: the detector's versions and the SAM version it reads live there. */
  registry: string;
  detectorName: string;
  /** The SAM version whose embeddings the detector reads: "<name>/v<k>". */
  sam: string;
  /** How to train: everything but where the version goes and what it starts from. */
  train: Omit<TrainDetectorInput, 'registry' | 'modelName' | 'version' | 'parent' | 'sam'>;
  /** The held-out boxes both detectors are measured on (a manifest; its holdout split if any). */
  evaluation: { storage: string; dataset: string; maxImages?: number };
  gate: DetectorGateSettings;
  /** Why this retrain runs, for the lineage. */
  trigger: string;
}

export interface RetrainDetectorResult {
  version: number;
  uri: string;
  /** The detector version it continued from (null: trained from scratch). */
  parent: number | null;
  metrics: EvaluateDetectorResult;
  championMetrics: EvaluateDetectorResult | null;
  promoted: boolean;
  reason: string;
}

export async function retrainDetector(input: RetrainDetectorInput): Promise<RetrainDetectorResult> {
  const { registry, detectorName: name } = input;
  const ref = { registry, name };
  const champion = await resolveModelAlias({ ...ref, alias: CHAMPION });
  const claimed = await claimModelVersion({ ...ref, idempotencyKey: workflowInfo().workflowId });
  const { version } = claimed;
  upsertSearchAttributes([{ key: SAE_MODEL, value: `${name}@v${version}` }]);
  if (claimed.done) {
    const lineage = claimed.done;
    const championMetrics = lineage.gate?.championMetrics;
    return {
      version,
      uri: claimed.uri,
      parent: lineage.parent?.version ?? null,
      metrics: checked(
        EvaluateDetectorResultSchema,
        lineage.metrics?.[input.evaluation.dataset],
        'the lineage',
      ),
      championMetrics: championMetrics
        ? checked(EvaluateDetectorResultSchema, championMetrics, 'the lineage')
        : null,
      ...(await finishPromotion(ref, lineage, champion)),
    };
  }

  const evaluate = async (model: string) =>
    checked(
      EvaluateDetectorResultSchema,
      await evaluateDetector({ ...input.evaluation, registry, model, sam: input.sam }),
      'evaluateDetector',
    );
  // The champion's figures on this SAM's embeddings, or null when it reads another encoder.
  let championMetrics: EvaluateDetectorResult | null = null;
  let noChampion = 'no champion yet: the first version becomes it';
  if (champion !== null) {
    try {
      championMetrics = await evaluate(`${name}/v${champion}`);
    } catch (err) {
      if (!isActivityError(err, 'DetectorMismatch')) throw err;
      noChampion = `the champion v${champion} reads another SAM encoder than ${input.sam}: replaced`;
    }
  }
  const parent = championMetrics !== null ? champion : null;

  const trained = checked(
    TrainDetectorResultSchema,
    await trainDetector({
      ...input.train,
      registry,
      modelName: name,
      version,
      sam: input.sam,
      ...(parent !== null ? { parent: `${name}/v${parent}` } : {}),
    }),
    'trainDetector',
  );
  const metrics = await evaluate(`${name}/v${version}`);
  let decision = detectorGateDecision(metrics, championMetrics, input.gate, noChampion);

  await completeModelVersion({
    ...ref,
    version,
    lineage: {
      parent: parent !== null ? { name, version: parent } : null,
      trainingSet: { uri: trained.trainingSetUri, sha256: trained.trainingSetSha256 },
      steps: trained.steps,
      trigger: `${input.trigger} (on ${input.sam}'s embeddings)`,
      metrics: { [input.evaluation.dataset]: metrics },
      gate: {
        promoted: decision.promoted,
        reason: decision.reason,
        champion: champion !== null ? { name, version: champion } : null,
        championMetrics,
      },
      idempotencyKey: workflowInfo().workflowId,
      files: trained.files,
    },
  });
  if (decision.promoted) decision = await promote(ref, version, champion, decision.reason);
  return { version, uri: claimed.uri, parent, metrics, championMetrics, ...decision };
}
