// Stage 3 of the data engine, fully automatic: plan shard manifests, then run shard child workflows
// through a bounded sliding window. The history grows with every shard, so after a batch of shards
// the workflow continues as new with an explicit cursor. The window stays full across that
// boundary: the shards still running are handed over in the cursor (their children are abandoned,
// not cancelled, when this run closes) and the next run awaits their results through an activity.
import {
  ActivityFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type {
  Stage3Activities,
  ShardResult,
  Stage3Plan,
  Stage3Spec,
  WorkEstimate,
} from '../activities/stage3.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { cancelByWorkflowId } from './continuing-child.ts';
import { automaticShard } from './stage3-shard.ts';
import { AWAIT_SHARD_ERRORS, PLAN_SHARDS_ERRORS, retryPolicy } from './retry-policies.ts';
import { SAE_IMAGES_DONE, SAE_IMAGES_FAILED, SAE_MASKS, SAE_RUN, SAE_STAGE } from './search-attributes.ts';

const { planShards } = proxyActivities<Stage3Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '1 minute',
  retry: retryPolicy(PLAN_SHARDS_ERRORS),
});

// Waits on a shard child an earlier run of this workflow started; as long as the shard may take.
const { awaitShard } = proxyActivities<Stage3Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '7 days',
  heartbeatTimeout: '1 minute',
  retry: retryPolicy(AWAIT_SHARD_ERRORS),
});

/** Runs that keep the window full across continue-as-new; older histories drained it first. */
const HAND_OVER_RUNNING_SHARDS = 'stage3-hand-over-running-shards';
/** Cancelled runs that cancel every shard not yet done; older ones missed some (see the catch). */
const CANCEL_EVERY_UNFINISHED_SHARD = 'stage3-cancel-every-unfinished-shard';

export interface Stage3Totals {
  shardsDone: number;
  imagesDone: number;
  imagesFailed: number;
  masks: number;
  /** Dry runs: the work a real run would do. */
  work?: WorkEstimate;
}

export interface Stage3Cursor {
  plan: Stage3Plan;
  nextShard: number;
  totals: Stage3Totals;
  /** Shards an earlier run started that were still running when it continued as new. */
  running?: number[];
}

export interface AutomaticStageInput {
  spec: Stage3Spec;
  /** Set only by continue-as-new. */
  cursor?: Stage3Cursor;
}

export interface Stage3Progress extends Stage3Totals {
  shards: number;
  images: number;
  running: number;
}

export interface AutomaticStageResult extends Stage3Totals {
  shards: number;
  images: number;
}

export const stage3ProgressQuery = defineQuery<Stage3Progress>('progress');

export function shardWorkflowId(runId: string, shard: number): string {
  return `${runId}/stage3/shard-${shard}`;
}

export async function automaticStage(input: AutomaticStageInput): Promise<AutomaticStageResult> {
  const { spec } = input;
  const plan = input.cursor?.plan ?? (await planShards(spec));
  const totals: Stage3Totals = input.cursor?.totals ?? {
    shardsDone: 0,
    imagesDone: 0,
    imagesFailed: 0,
    masks: 0,
  };
  let nextShard = input.cursor?.nextShard ?? 0;
  const running = new Set<number>();
  setHandler(stage3ProgressQuery, () => ({
    ...totals,
    shards: plan.shardCount,
    images: imagesToSegment(plan, spec),
    running: running.size,
  }));
  const handOver = patched(HAND_OVER_RUNNING_SHARDS);
  const idOf = (shard: number) => shardWorkflowId(spec.workflowIdBase ?? spec.runId, shard);

  const startedHere = nextShard;
  let shardFailure: unknown;
  // Started or inherited by this run and not done; unlike `running`, a cancelled await leaves it.
  const unfinished = new Set<number>();
  const track = (shard: number, result: Promise<ShardResult>) => {
    running.add(shard);
    unfinished.add(shard);
    result
      .then(
        (r) => {
          unfinished.delete(shard);
          addResult(totals, r);
        },
        (err: unknown) => (shardFailure ??= err), // a shard fails only on errors a retry cannot fix
      )
      .finally(() => running.delete(shard));
  };
  for (const shard of input.cursor?.running ?? []) track(shard, awaitShard({ workflowId: idOf(shard) }));

  const roomForMoreHistory = () =>
    nextShard - startedHere < spec.shardsPerWorkflowRun && !workflowInfo().continueAsNewSuggested;

  try {
    while (nextShard < plan.shardCount && roomForMoreHistory() && shardFailure === undefined) {
      await condition(() => running.size < spec.maxConcurrentShards || shardFailure !== undefined);
      if (shardFailure !== undefined) break;
      const shard = nextShard++;
      const child = await startChild(automaticShard, {
        workflowId: idOf(shard),
        args: [{ ...spec.shardTemplate, runId: spec.runId, outputUri: spec.outputUri, shard }],
        // Abandoned, so that a shard running at continue-as-new goes on for the next run to await.
        parentClosePolicy: handOver ? ParentClosePolicy.ABANDON : ParentClosePolicy.REQUEST_CANCEL,
        typedSearchAttributes: [
          { key: SAE_RUN, value: spec.runId },
          { key: SAE_STAGE, value: 'stage3' },
        ],
      });
      track(shard, child.result());
    }
    // Older runs drained the window here; now only the last run waits for its shards.
    if (!handOver || nextShard >= plan.shardCount || shardFailure !== undefined)
      await condition(() => running.size === 0);
  } catch (err) {
    // Cancelled: the shards this run inherited are no children of it; cancel them by id. The
    // cancel rejects their awaitShard activities at once, which takes them out of `running`
    // before this runs, so count on `unfinished`.
    if (isCancellation(err) && handOver) {
      const shards = patched(CANCEL_EVERY_UNFINISHED_SHARD) ? unfinished : running;
      await CancellationScope.nonCancellable(() => cancelByWorkflowId([...shards].map(idOf)));
    }
    throw err;
  }
  if (shardFailure !== undefined) throw unwrapAwaitedFailure(shardFailure);

  if (nextShard < plan.shardCount) {
    const cursor: Stage3Cursor = { plan, nextShard, totals, ...(handOver ? { running: [...running] } : {}) };
    await continueAsNew<typeof automaticStage>({ spec, cursor });
  }
  return { ...totals, shards: plan.shardCount, images: imagesToSegment(plan, spec) };
}

/** The plan's images, less those the annotation rounds took (stage3.skipAnnotated). */
function imagesToSegment(plan: Stage3Plan, spec: Stage3Spec): number {
  return Math.max(0, plan.imageCount - (spec.shardTemplate.firstImage ?? 0));
}

function addResult(totals: Stage3Totals, result: ShardResult): void {
  totals.shardsDone += 1;
  totals.imagesDone += result.done;
  totals.imagesFailed += result.failed;
  totals.masks += result.masks;
  if (result.work) totals.work = addWork(totals.work, result.work);
  upsertSearchAttributes([
    { key: SAE_IMAGES_DONE, value: totals.imagesDone },
    { key: SAE_IMAGES_FAILED, value: totals.imagesFailed },
    { key: SAE_MASKS, value: totals.masks },
  ]);
}

/** A handed-over shard's failure comes through awaitShard: report the shard's own error. */
function unwrapAwaitedFailure(err: unknown): unknown {
  return err instanceof ActivityFailure && err.cause ? err.cause : err;
}

function addWork(total: WorkEstimate | undefined, more: WorkEstimate): WorkEstimate {
  return {
    megapixels: (total?.megapixels ?? 0) + more.megapixels,
    encoderRuns: (total?.encoderRuns ?? 0) + more.encoderRuns,
    prompts: (total?.prompts ?? 0) + more.prompts,
  };
}
