// One round of stage 1, assisted-manual annotation (`<run>/stage1/round-<k>`): pick the round's
// images from the run's plan, compute their embeddings once on the inference pool, publish one
// annotation task per image (workflows/stage1-task.ts) for the annotation service to hand out,
// and close the round on a target number of masks, a deadline, or when every task is done. Then
// export what the annotators made (lib/stage1/round-export.ts).
//
// The round never holds its tasks' ids or masks: the tasks are found by their SaeRound search
// attribute and the masks counted in storage, so a round of 100,000 images keeps a short history.
// It continues as new with an explicit cursor while publishing and while waiting.
import {
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy } from '@temporalio/common';
import type { RoundProgress, RoundRef, Stage1Activities } from '../activities/stage1.ts';
import type { Stage3Activities } from '../activities/stage3.ts';
import type { ImageSource } from '../lib/images/image-source.ts';
import type { EmbeddingDtype } from '../lib/sam/embedding-file.ts';
import type { RoundExport, RoundSummary } from '../lib/stage1/round-export.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { PLAN_SHARDS_ERRORS, retryPolicy, STAGE1_ERRORS } from './retry-policies.ts';
import { SAE_LEASE_UNTIL, SAE_MASKS, SAE_ROUND, SAE_RUN, SAE_STAGE } from './search-attributes.ts';
import { annotationTask } from './stage1-task.ts';
import { annotationTaskWorkflowId, NO_LEASE, roundTag } from '../lib/stage1/task-messages.ts';

const { planShards } = proxyActivities<Stage3Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '1 minute',
  retry: retryPolicy(PLAN_SHARDS_ERRORS),
});

const { roundImages, roundProgress } = proxyActivities<Stage1Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '5 minutes',
  retry: retryPolicy(STAGE1_ERRORS),
});

const { closeRoundTasks } = proxyActivities<Stage1Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '1 minute',
  retry: retryPolicy(STAGE1_ERRORS),
});

/** Encoding and exporting: on the inference pool, heartbeating; a dead worker's batch is retried. */
function inferenceActivities(heartbeatTimeoutSeconds = 120) {
  return proxyActivities<Stage1Activities>({
    taskQueue: TASK_QUEUES.inference,
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: heartbeatTimeoutSeconds * 1000,
    retry: retryPolicy(STAGE1_ERRORS),
  });
}

export interface RoundSpec {
  runId: string;
  outputUri: string;
  round: number;
  modelUri: string;
  /** The run's plan (stage 3's): a round's images are a slice of it, so ids agree across stages. */
  plan: { images: ImageSource; shardSize: number };
  firstImage: number;
  imageCount: number;
  embeddingDtype: EmbeddingDtype;
  /** Images per embedding activity, and how many of those run at once. */
  embedBatch: number;
  embedWindow: number;
  leaseSeconds: number;
  /** Close once this many masks are accepted; null: no target. */
  targetMasks: number | null;
  /** Close this long after the round opened, whatever it has. */
  deadlineSeconds: number;
  /** How often the open round counts its masks and tasks. */
  pollSeconds: number;
  /** Tasks published per workflow run before continuing as new. */
  tasksPerWorkflowRun: number;
  /** How long an embedding or export activity may go silent before it is retried; default 120. */
  heartbeatTimeoutSeconds?: number;
}

export interface RoundCursor {
  openedAt: number;
  /** Offset in the round's images of the next batch to embed and publish. */
  next: number;
  published: number;
  failedImages: number;
  model?: string;
}

export type RoundPhase = 'publishing' | 'open' | 'closing' | 'exporting' | 'done';

export interface RoundStatus extends Partial<RoundProgress> {
  phase: RoundPhase;
  published: number;
  failedImages: number;
  images: number;
  closesAt: number;
  targetMasks: number | null;
}

export interface RoundResult {
  round: number;
  published: number;
  failedImages: number;
  closedBy: 'target' | 'deadline' | 'done';
  summary: RoundSummary;
  export: Omit<RoundExport, 'summary'>;
}

export const roundStatusQuery = defineQuery<RoundStatus>('round');

export function roundWorkflowId(runId: string, round: number): string {
  return `${runId}/stage1/round-${round}`;
}

export async function annotationRound(spec: RoundSpec, cursor?: RoundCursor): Promise<RoundResult> {
  const at: RoundCursor = cursor ?? { openedAt: Date.now(), next: 0, published: 0, failedImages: 0 };
  const ref: RoundRef = { runId: spec.runId, outputUri: spec.outputUri, round: spec.round };
  const closesAt = at.openedAt + spec.deadlineSeconds * 1000;
  let phase: RoundPhase = at.next < spec.imageCount ? 'publishing' : 'open';
  let progress: RoundProgress | undefined;
  setHandler(roundStatusQuery, () => ({
    phase,
    ...progress,
    published: at.published,
    failedImages: at.failedImages,
    images: spec.imageCount,
    closesAt,
    targetMasks: spec.targetMasks,
  }));

  try {
    if (phase === 'publishing') {
      if (!cursor) await planShards({ ...spec.plan, runId: spec.runId, outputUri: spec.outputUri });
      const more = await publishTasks(spec, at, closesAt);
      if (more) return await continueAsNew<typeof annotationRound>(spec, at);
      phase = 'open';
    }

    let closedBy: RoundResult['closedBy'] | undefined;
    while (!closedBy) {
      progress = await roundProgress(ref);
      upsertSearchAttributes([{ key: SAE_MASKS, value: progress.masks }]);
      closedBy = closeReason(spec, at, progress, closesAt);
      if (closedBy) break;
      if (workflowInfo().continueAsNewSuggested) return await continueAsNew<typeof annotationRound>(spec, at);
      await sleep(Math.min(spec.pollSeconds * 1000, Math.max(closesAt - Date.now(), 1)));
    }

    phase = 'closing';
    await closeTasks(ref, spec, at);
    phase = 'exporting';
    const { summary, ...exported } = await inferenceActivities(spec.heartbeatTimeoutSeconds).exportRound(ref);
    phase = 'done';
    return {
      round: spec.round,
      published: at.published,
      failedImages: at.failedImages,
      closedBy,
      summary,
      export: exported,
    };
  } catch (err) {
    // Cancelled: the tasks (abandoned children) close with the masks they have.
    if (isCancellation(err)) await CancellationScope.nonCancellable(() => closeRoundTasks(ref));
    throw err;
  }
}

/**
 * Embeds the round's images in batches through a window and publishes each batch's tasks as soon
 * as it is embedded, so annotators start before the last image is encoded. True when this run
 * has published its share and should continue as new.
 */
async function publishTasks(spec: RoundSpec, at: RoundCursor, closesAt: number): Promise<boolean> {
  const startedHere = at.published;
  let inFlight = 0;
  let failure: unknown;
  const publishBatch = async (offset: number) => {
    const count = Math.min(spec.embedBatch, spec.imageCount - offset);
    const images = await roundImages({
      runId: spec.runId,
      outputUri: spec.outputUri,
      shardSize: spec.plan.shardSize,
      first: spec.firstImage + offset,
      count,
    });
    const embedded = await inferenceActivities(spec.heartbeatTimeoutSeconds).embedImages({
      runId: spec.runId,
      outputUri: spec.outputUri,
      modelUri: spec.modelUri,
      images,
      dtype: spec.embeddingDtype,
    });
    at.model ??= embedded.model;
    at.failedImages += embedded.failed.length;
    await Promise.all(embedded.images.map((image) => startTask(spec, image, embedded.model)));
    at.published += embedded.images.length;
  };

  while (at.next < spec.imageCount && failure === undefined && Date.now() < closesAt) {
    const room =
      at.published - startedHere < spec.tasksPerWorkflowRun && !workflowInfo().continueAsNewSuggested;
    if (!room) break;
    await condition(() => inFlight < spec.embedWindow || failure !== undefined);
    if (failure !== undefined) break;
    const offset = at.next;
    at.next += spec.embedBatch;
    inFlight += 1;
    publishBatch(offset)
      .catch((err: unknown) => (failure ??= err))
      .finally(() => (inFlight -= 1));
  }
  await condition(() => inFlight === 0);
  if (failure !== undefined) throw failure;
  return at.next < spec.imageCount && Date.now() < closesAt;
}

async function startTask(
  spec: RoundSpec,
  image: { id: number; uri: string; width: number; height: number },
  model: string,
): Promise<void> {
  try {
    await startChild(annotationTask, {
      workflowId: annotationTaskWorkflowId(spec.runId, spec.round, image.id),
      args: [
        {
          runId: spec.runId,
          outputUri: spec.outputUri,
          round: spec.round,
          image,
          model,
          leaseSeconds: spec.leaseSeconds,
        },
      ],
      // Tasks outlive each run of the round (continue-as-new); the round closes them itself.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      // A task that closed is never opened again by a rerun of the round.
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      typedSearchAttributes: [
        { key: SAE_RUN, value: spec.runId },
        { key: SAE_STAGE, value: 'stage1' },
        { key: SAE_ROUND, value: roundTag(spec.runId, spec.round) },
        { key: SAE_LEASE_UNTIL, value: NO_LEASE },
      ],
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
  }
}

function closeReason(
  spec: RoundSpec,
  at: RoundCursor,
  progress: RoundProgress,
  closesAt: number,
): RoundResult['closedBy'] | undefined {
  if (spec.targetMasks !== null && progress.masks >= spec.targetMasks) return 'target';
  // Counted against what this round published: visibility may not list a new task yet.
  if (progress.closed >= at.published) return 'done';
  if (Date.now() >= closesAt) return 'deadline';
  return undefined;
}

/** Closes every task and waits until visibility shows them all closed (their masks stored). */
async function closeTasks(ref: RoundRef, spec: RoundSpec, at: RoundCursor): Promise<void> {
  for (;;) {
    await closeRoundTasks(ref);
    const { closed } = await roundProgress(ref);
    if (closed >= at.published) return;
    await sleep(Math.min(spec.pollSeconds, 5) * 1000);
  }
}
