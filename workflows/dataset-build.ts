// The dataset build of a run (id `<run>/dataset`): one activity per stage-3 shard through a
// bounded sliding window on the CPU pool, then one that puts the shards' parts together. Like
// stage 3, it continues as new with an explicit cursor before its history grows long. A shard
// activity takes seconds to minutes, so the window simply drains before continuing as new; a shard
// built by an attempt that was cut short is reused, not rebuilt (lib/dataset/build.ts).
import {
  condition,
  continueAsNew,
  defineQuery,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { DatasetActivities, DatasetShardResult, DatasetSummary } from '../activities/dataset.ts';
import type { ShardPlan } from '../lib/stage3/shard-plan.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { BUILD_DATASET_ERRORS, retryPolicy } from './retry-policies.ts';
import { SAE_STAGE } from './search-attributes.ts';

const { planDataset } = proxyActivities<DatasetActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '5 minutes',
  retry: retryPolicy(BUILD_DATASET_ERRORS),
});

// Reading masks and encoding release copies is CPU work: it runs on the inference pool, which owns
// the cores, never beside the workflows on the orchestration pool.
const { buildDatasetShard, finishDataset } = proxyActivities<DatasetActivities>({
  taskQueue: TASK_QUEUES.inference,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '2 minutes',
  retry: retryPolicy(BUILD_DATASET_ERRORS),
});

export interface DatasetBuildTotals {
  shardsDone: number;
  images: number;
  imagesFailed: number;
  masks: number;
  releaseImages: number;
}

export interface DatasetBuildCursor {
  plan: ShardPlan;
  nextShard: number;
  totals: DatasetBuildTotals;
}

export interface DatasetBuildInput {
  runId: string;
  outputUri: string;
  release?: { shortestSide: number };
  /** Stage 3 left the images before this one to the annotation rounds (stage3.skipAnnotated). */
  firstImage?: number;
  /** Shard activities queued at once; the inference pool's own concurrency bounds the work. */
  maxConcurrentShards?: number;
  /** Shards per workflow run before continue-as-new (about 6 history events each). */
  shardsPerWorkflowRun?: number;
  /** Set only by continue-as-new. */
  cursor?: DatasetBuildCursor;
}

export interface DatasetBuildProgress extends DatasetBuildTotals {
  shards: number;
  running: number;
}

export const DEFAULT_DATASET_WINDOW = 8;
export const DEFAULT_DATASET_SHARDS_PER_RUN = 500;

export const datasetBuildProgressQuery = defineQuery<DatasetBuildProgress>('progress');

export function datasetWorkflowId(runId: string): string {
  return `${runId}/dataset`;
}

export async function datasetBuild(input: DatasetBuildInput): Promise<DatasetSummary> {
  const { runId, outputUri, release } = input;
  upsertSearchAttributes([{ key: SAE_STAGE, value: 'dataset' }]);
  const plan = input.cursor?.plan ?? (await planDataset({ runId, outputUri, release }));
  const totals: DatasetBuildTotals = input.cursor?.totals ?? {
    shardsDone: 0,
    images: 0,
    imagesFailed: 0,
    masks: 0,
    releaseImages: 0,
  };
  let nextShard = input.cursor?.nextShard ?? 0;
  let running = 0;
  setHandler(datasetBuildProgressQuery, () => ({ ...totals, shards: plan.shardCount, running }));

  const window = input.maxConcurrentShards ?? DEFAULT_DATASET_WINDOW;
  const budget = input.shardsPerWorkflowRun ?? DEFAULT_DATASET_SHARDS_PER_RUN;
  const startedHere = nextShard;
  let failure: unknown;
  const roomForMoreHistory = () => nextShard - startedHere < budget && !workflowInfo().continueAsNewSuggested;

  while (nextShard < plan.shardCount && roomForMoreHistory() && failure === undefined) {
    await condition(() => running < window || failure !== undefined);
    if (failure !== undefined) break;
    running += 1;
    buildDatasetShard({ runId, outputUri, release, shard: nextShard++ })
      .then(
        (result) => addShard(totals, result),
        (err: unknown) => (failure ??= err), // only errors a retry cannot fix reach here
      )
      .finally(() => (running -= 1));
  }
  await condition(() => running === 0);
  if (failure !== undefined) throw failure;

  if (nextShard < plan.shardCount) {
    await continueAsNew<typeof datasetBuild>({ ...input, cursor: { plan, nextShard, totals } });
  }
  return finishDataset({ runId, outputUri, release, firstImage: input.firstImage });
}

function addShard(totals: DatasetBuildTotals, result: DatasetShardResult): void {
  totals.shardsDone += 1;
  totals.images += result.images;
  totals.imagesFailed += result.imagesFailed;
  totals.masks += result.masks;
  totals.releaseImages += result.releaseImages;
}
