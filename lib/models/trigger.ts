// When a run retrains (the paper retrained SAM 6 times during stage 1, each time on the masks
// annotated so far): once the accepted masks reach `minNewMasks` more than at the last retrain, or
// grow by `minGrowth` of them, no sooner than `minIntervalMs` after the last one started, and never
// while one is running. Pure: the run workflow calls it after each round with workflow time.
export interface RetrainPolicy {
  minNewMasks: number;
  /** A fraction, e.g. 0.5 for +50%; null: off. */
  minGrowth: number | null;
  /** null: no minimum interval. */
  minIntervalMs: number | null;
}

export interface RetrainState {
  /** Accepted masks in the run so far. */
  masks: number;
  /** Accepted masks when the last retrain started (0: none yet). */
  masksAtLastRetrain: number;
  /** When the last retrain started, in ms (null: none yet). */
  lastRetrainAt: number | null;
  running: boolean;
  now: number;
}

export interface RetrainDecision {
  due: boolean;
  /** Why (or why not), for the lineage's trigger and the run's progress. */
  reason: string;
}

export function retrainDue(policy: RetrainPolicy, state: RetrainState): RetrainDecision {
  const added = state.masks - state.masksAtLastRetrain;
  if (state.running) return { due: false, reason: 'a retrain is running' };
  if (added <= 0) return { due: false, reason: 'no new masks since the last retrain' };
  const byCount = added >= policy.minNewMasks;
  const growth = state.masksAtLastRetrain > 0 ? added / state.masksAtLastRetrain : null;
  const byGrowth = policy.minGrowth !== null && growth !== null && growth >= policy.minGrowth;
  const since = state.masksAtLastRetrain > 0 ? `since the last retrain (${state.masksAtLastRetrain})` : 'in the run';
  if (!byCount && !byGrowth) {
    return { due: false, reason: `${added} new masks ${since}, fewer than ${policy.minNewMasks}` };
  }
  if (policy.minIntervalMs !== null && state.lastRetrainAt !== null) {
    const wait = state.lastRetrainAt + policy.minIntervalMs - state.now;
    if (wait > 0) return { due: false, reason: `the last retrain started less than the minimum interval ago (${Math.ceil(wait / 1000)} s left)` };
  }
  const why = byCount
    ? `${added} new masks ${since} (≥ ${policy.minNewMasks})`
    : `masks grew by ${(100 * growth!).toFixed(0)}% ${since} (≥ ${(100 * policy.minGrowth!).toFixed(0)}%)`;
  return { due: true, reason: why };
}
