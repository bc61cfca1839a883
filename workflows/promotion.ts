// Moving a model's champion after a retrain (workflows/retrain.ts, workflows/retrain-detector.ts):
// the alias moves only from the version the gate measured against, so two retrains that finish
// together cannot both win; and a rerun of a retrain whose version is complete finishes a
// promotion the first run decided but did not get to make.
import { proxyActivities } from '@temporalio/workflow';
import type { ModelActivities } from '../activities/models.ts';
import { CHAMPION, type GateDecision } from '../lib/models/gate.ts';
import type { Lineage } from '../lib/models/registry.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { isActivityError } from './activity-results.ts';
import { MODEL_REGISTRY_ERRORS, retryPolicy } from './retry-policies.ts';

const { moveModelAlias } = proxyActivities<ModelActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '1 minute',
  retry: retryPolicy(MODEL_REGISTRY_ERRORS),
});

export interface ModelRef {
  registry: string;
  name: string;
}

/** Moves the champion from `from` to `version`, unless someone moved it meanwhile. */
export async function promote(
  ref: ModelRef,
  version: number,
  from: number | null,
  reason: string,
): Promise<GateDecision> {
  try {
    await moveModelAlias({ ...ref, alias: CHAMPION, version, expected: from, reason });
    return { promoted: true, reason };
  } catch (err) {
    if (!isActivityError(err, 'AliasConflictError')) throw err;
    // Another retrain or a person moved the champion meanwhile: this version stays, unpromoted.
    return {
      promoted: false,
      reason: `not promoted: ${CHAMPION} moved meanwhile (${err.cause.message}); ${reason}`,
    };
  }
}

/**
 * The gate's recorded decision on a complete version; a promotion the earlier run did not get to
 * is made now, if the champion is still the version the gate measured against.
 */
export async function finishPromotion(
  ref: ModelRef,
  lineage: Lineage,
  championNow: number | null,
): Promise<GateDecision> {
  const gate = lineage.gate ?? { promoted: false, reason: 'no gate decision recorded', champion: null };
  if (!gate.promoted || championNow === lineage.version)
    return { promoted: gate.promoted, reason: gate.reason };
  const measuredAgainst = gate.champion?.version ?? null;
  if (championNow !== measuredAgainst)
    return { promoted: false, reason: `not promoted: ${CHAMPION} is v${championNow} now; ${gate.reason}` };
  return promote(ref, lineage.version, measuredAgainst, gate.reason);
}
