// One round of stage 1, assisted-manual annotation (`<run>/stage1/round-<k>`): pick the round's
// images from the run's plan, compute their embeddings once on the inference pool, publish one
// annotation task per image (workflows/stage1-task.ts) for the annotation service to hand out,
// and close the round on a target number of masks, a deadline, or when every task is done. Then
// export what the annotators made (lib/stage1/round-export.ts).
//
// The round never holds its tasks' ids or masks: the tasks are found by their SaeRound search
// attribute and the masks counted in storage, so a round of 100,000 images keeps a short history.
// It continues as new with an explicit cursor while publishing and while waiting.
//
// A stage-2 round (semi-automatic, `<run>/stage2/round-<k>`) is the same round with `prefill`: after
// a batch is embedded, the detector's boxes prompt SAM on the inference pool and each task arrives
// with the confident masks (lib/stage2/prefill-store.ts). Stage-1 and stage-2 rounds share one
// numbering and one storage layout (runs/<run>/stage1/round-<k>/), so exports and training sets
// read them alike. A detector that cannot run on this SAM, or finds nothing, leaves the round a
// stage-1 round, with the reason in its result; it does not fail it.
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
import type { Stage2Activities } from '../activities/stage2.ts';
import type { Stage3Activities } from '../activities/stage3.ts';
import type { PrefillSettings } from '../lib/stage2/prefill.ts';
import type { ImageSource } from '../lib/images/image-source.ts';
import type { EmbeddingDtype } from '../lib/sam/embedding-file.ts';
import type { AnnotationStage, RoundExport, RoundSummary } from '../lib/stage1/round-export.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { isActivityError } from './activity-results.ts';
import { PLAN_SHARDS_ERRORS, retryPolicy, STAGE1_ERRORS, STAGE2_ERRORS } from './retry-policies.ts';
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

/**
 * Encoding, pre-filling and exporting: on the inference pool, heartbeating; a dead worker's batch
 * is retried.
 */
function inferenceActivities<A extends object = Stage1Activities>(
  heartbeatTimeoutSeconds = 120,
  nonRetryable: readonly string[] = STAGE1_ERRORS,
) {
  return proxyActivities<A>({
    taskQueue: TASK_QUEUES.inference,
    startToCloseTimeout: '2 hours',
    heartbeatTimeout: heartbeatTimeoutSeconds * 1000,
    retry: retryPolicy(nonRetryable),
  });
}

/** Errors that say the detector cannot run with this SAM (not an outage): the round goes on without pre-fill. */
const DETECTOR_UNUSABLE = ['DetectorPackageError', 'ModelPackageError'];

export type { AnnotationStage };

export interface RoundPrefill {
  /** The detector package (a registry version's folder) whose boxes prompt SAM. */
  detectorUri: string;
  settings: PrefillSettings;
}

export interface RoundSpec {
  /** Which stage the round belongs to (default stage1); stage2 rounds have `prefill`. */
  stage?: AnnotationStage;
  prefill?: RoundPrefill;
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
  /** Stage 2: what pre-fill did so far (absent in a stage-1 round). */
  prefill?: PrefillTally;
}

export interface PrefillTally {
  detector?: string;
  /** Images published with pre-filled masks, and those masks. */
  images: number;
  masks: number;
  /** Why tasks go out without pre-fill, when the detector could not run. */
  problem?: string;
}

export type RoundPhase = 'publishing' | 'open' | 'closing' | 'exporting' | 'done';

export interface RoundStatus extends Partial<RoundProgress> {
  phase: RoundPhase;
  published: number;
  failedImages: number;
  images: number;
  closesAt: number;
  targetMasks: number | null;
  /** The SAM that assists ("name@version"), once the first batch is embedded. */
  model?: string;
  /** Stage 2: pre-fill so far, with the detector's version. */
  prefill?: PrefillTally;
}

export interface RoundResult {
  round: number;
  published: number;
  failedImages: number;
  closedBy: 'target' | 'deadline' | 'done';
  /** Stage 2: pre-fill's tally; `problem` says why the round ran as a stage-1 round. */
  prefill?: PrefillTally;
  summary: RoundSummary;
  export: Omit<RoundExport, 'summary'>;
}

export const roundStatusQuery = defineQuery<RoundStatus>('round');

export function roundWorkflowId(runId: string, round: number, stage: AnnotationStage = 'stage1'): string {
  return `${runId}/${stage}/round-${round}`;
}

export async function annotationRound(spec: RoundSpec, cursor?: RoundCursor): Promise<RoundResult> {
  const at: RoundCursor = cursor ?? {
    openedAt: Date.now(),
    next: 0,
    published: 0,
    failedImages: 0,
    ...(spec.prefill ? { prefill: { images: 0, masks: 0 } } : {}),
  };
  const ref: RoundRef = {
    runId: spec.runId,
    outputUri: spec.outputUri,
    round: spec.round,
    stage: spec.stage,
  };
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
    model: at.model,
    prefill: at.prefill,
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
    if (at.prefill && !at.prefill.problem && at.prefill.masks === 0 && at.published > 0)
      at.prefill.problem = 'the detector found no confident masks: the round ran as a stage-1 round';
    return {
      round: spec.round,
      published: at.published,
      failedImages: at.failedImages,
      closedBy,
      ...(at.prefill ? { prefill: at.prefill } : {}),
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
    const prefilled = await prefill(
      spec,
      at,
      embedded.images.map((image) => image.id),
    );
    await Promise.all(
      embedded.images.map((image) => startTask(spec, image, embedded.model, prefilled.get(image.id))),
    );
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

/**
 * Stage 2: pre-fills the embedded images; returns each pre-filled image's masks. A detector that
 * cannot run here is noted once in the tally and the round goes on without pre-fill.
 */
async function prefill(
  spec: RoundSpec,
  at: RoundCursor,
  imageIds: number[],
): Promise<Map<number, { detector: string; masks: number }>> {
  const made = new Map<number, { detector: string; masks: number }>();
  if (!spec.prefill || !at.prefill || at.prefill.problem !== undefined || imageIds.length === 0) return made;
  try {
    const result = await inferenceActivities<Stage2Activities>(
      spec.heartbeatTimeoutSeconds,
      STAGE2_ERRORS,
    ).prefillImages({
      runId: spec.runId,
      outputUri: spec.outputUri,
      modelUri: spec.modelUri,
      detectorUri: spec.prefill.detectorUri,
      imageIds,
      settings: spec.prefill.settings,
    });
    at.prefill.detector ??= result.detector;
    for (const { id, masks } of result.images) {
      made.set(id, { detector: result.detector, masks });
      if (masks > 0) at.prefill.images += 1;
      at.prefill.masks += masks;
    }
  } catch (err) {
    const type = DETECTOR_UNUSABLE.find((t) => isActivityError(err, t));
    if (!type) throw err;
    at.prefill.problem = `${type}: ${(err as { cause: Error }).cause.message}`;
  }
  return made;
}

async function startTask(
  spec: RoundSpec,
  image: { id: number; uri: string; width: number; height: number },
  model: string,
  prefilled?: { detector: string; masks: number },
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
          ...(prefilled && prefilled.masks > 0 ? { prefill: prefilled } : {}),
        },
      ],
      // Tasks outlive each run of the round (continue-as-new); the round closes them itself.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      // A task that closed is never opened again by a rerun of the round.
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      typedSearchAttributes: [
        { key: SAE_RUN, value: spec.runId },
        { key: SAE_STAGE, value: spec.stage ?? 'stage1' },
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
