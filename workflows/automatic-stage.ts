// Stage 3 of the data engine, fully automatic: plan shard manifests, then run shard child workflows
// through a bounded sliding window. The history grows with every shard, so after a batch of shards
// the workflow drains its window and continues as new with an explicit cursor.
import {
  condition,
  continueAsNew,
  defineQuery,
  ParentClosePolicy,
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
import { automaticShard } from './automatic-shard.ts';
import { PLAN_SHARDS_ERRORS, retryPolicy } from './retry-policies.ts';
import { SAE_IMAGES_DONE, SAE_IMAGES_FAILED, SAE_MASKS, SAE_RUN, SAE_STAGE } from './search-attributes.ts';

const { planShards } = proxyActivities<Stage3Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '1 minute',
  retry: retryPolicy(PLAN_SHARDS_ERRORS),
});

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
    images: plan.imageCount,
    running: running.size,
  }));

  const startedHere = nextShard;
  const addResult = (result: ShardResult) => {
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
  };

  let shardFailure: unknown;
  const roomForMoreHistory = () =>
    nextShard - startedHere < spec.shardsPerWorkflowRun && !workflowInfo().continueAsNewSuggested;

  while (nextShard < plan.shardCount && roomForMoreHistory() && shardFailure === undefined) {
    await condition(() => running.size < spec.maxConcurrentShards || shardFailure !== undefined);
    if (shardFailure !== undefined) break;
    const shard = nextShard++;
    running.add(shard);
    const child = await startChild(automaticShard, {
      workflowId: shardWorkflowId(spec.workflowIdBase ?? spec.runId, shard),
      args: [{ ...spec.shardTemplate, runId: spec.runId, outputUri: spec.outputUri, shard }],
      parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      typedSearchAttributes: [
        { key: SAE_RUN, value: spec.runId },
        { key: SAE_STAGE, value: 'stage3' },
      ],
    });
    child
      .result()
      .then(
        (result) => addResult(result),
        (err: unknown) => (shardFailure ??= err), // a shard fails only on errors a retry cannot fix
      )
      .finally(() => running.delete(shard));
  }
  // Drain the window: a continue-as-new must not leave children whose results it would never see.
  await condition(() => running.size === 0);
  if (shardFailure !== undefined) throw shardFailure;

  if (nextShard < plan.shardCount) {
    await continueAsNew<typeof automaticStage>({ spec, cursor: { plan, nextShard, totals } });
  }
  return { ...totals, shards: plan.shardCount, images: plan.imageCount };
}

function addWork(total: WorkEstimate | undefined, more: WorkEstimate): WorkEstimate {
  return {
    megapixels: (total?.megapixels ?? 0) + more.megapixels,
    encoderRuns: (total?.encoderRuns ?? 0) + more.encoderRuns,
    prompts: (total?.prompts ?? 0) + more.prompts,
  };
}
