// One stage-1 annotation task: an image of a round, handed to one annotator at a time under a
// lease, taking their masks until they finish the image. One workflow per task
// (`<run>/stage1/round-<k>/<image-id>`), so a round of any size stays within Temporal's limits on
// Updates and history per execution.
//
// Claims and submissions are Updates with validators: a request that cannot be accepted (another
// annotator's task, an expired lease, a malformed mask) is refused before it reaches the history.
// An accepted mask is stored by an activity before the submit returns, so nothing acknowledged is
// lost; a repeated submission id returns the first answer and stores nothing more.
import {
  allHandlersFinished,
  condition,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Stage1Activities } from '../activities/stage1.ts';
import { submissionProblem, type Submission } from '../lib/stage1/submission.ts';
import {
  claimTaskUpdate,
  closeTaskSignal,
  finishTaskUpdate,
  flagTaskUpdate,
  NO_LEASE,
  rejectPrefillUpdate,
  releaseTaskUpdate,
  submitMaskUpdate,
  taskStateQuery,
  type AnnotationTaskInput,
  type AnnotationTaskResult,
  type Lease,
  type SubmitResult,
} from '../lib/stage1/task-messages.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import type { Stage2Activities } from '../activities/stage2.ts';
import { retryPolicy, STAGE1_ERRORS, STAGE2_ERRORS } from './retry-policies.ts';
import { SAE_LEASE_UNTIL } from './search-attributes.ts';

const { storeAnnotation, storeFlag } = proxyActivities<Stage1Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '1 minute',
  retry: retryPolicy(STAGE1_ERRORS),
});

// A mask is one small write that the annotator waits for: run it in the worker that runs the task
// (a local activity), without a round trip through the server's task queue. Measured by
// `npm run bench:annotate`; histories from before it stored masks with the activity above.
const local = proxyLocalActivities<Stage1Activities>({
  startToCloseTimeout: '1 minute',
  retry: retryPolicy(STAGE1_ERRORS),
});
const STORE_MASKS_LOCALLY = 'stage1-store-masks-locally';

const stage2 = proxyLocalActivities<Stage2Activities>({
  startToCloseTimeout: '1 minute',
  retry: retryPolicy(STAGE2_ERRORS),
});

export async function annotationTask(input: AnnotationTaskInput): Promise<AnnotationTaskResult> {
  const { image } = input;
  let holder: Lease | null = null;
  let finished: AnnotationTaskResult['closedBy'] | null = null;
  const skippedBy = new Set<string>();
  const accepted = new Map<string, Promise<SubmitResult>>(); // by submission id
  const annotators: string[] = [];
  const rejected = new Set<number>(); // pre-filled masks deleted, by index

  const acceptMask = async (sub: Submission): Promise<SubmitResult> => {
    const result: SubmitResult = {
      submissionId: sub.submissionId,
      index: accepted.size,
      leaseExpiresAt: lease(sub.annotator).expiresAt,
    };
    if (!annotators.includes(sub.annotator)) annotators.push(sub.annotator);
    const store = patched(STORE_MASKS_LOCALLY) ? local.storeAnnotation : storeAnnotation;
    await store({
      outputUri: input.outputUri,
      record: {
        run: input.runId,
        round: input.round,
        imageId: image.id,
        image: image.uri,
        annotator: sub.annotator,
        submissionId: sub.submissionId,
        mask: sub.mask,
        seconds: sub.seconds,
        clicks: sub.clicks,
        model: input.model,
        acceptedAt: new Date().toISOString(),
      },
    });
    return result;
  };
  const held = () => (holder && holder.expiresAt > Date.now() ? holder : null);
  // The lease's end is a search attribute, so the service finds free tasks with one query.
  const lease = (annotator: string): Lease => {
    holder = { annotator, expiresAt: Date.now() + input.leaseSeconds * 1000 };
    upsertSearchAttributes([{ key: SAE_LEASE_UNTIL, value: new Date(holder.expiresAt) }]);
    return holder;
  };
  const unlease = () => {
    holder = null;
    upsertSearchAttributes([{ key: SAE_LEASE_UNTIL, value: NO_LEASE }]);
  };
  /** Refuses when the task is finished or another annotator holds it; returns the live lease. */
  const refuseIfUnavailable = (annotator: string): Lease | null => {
    if (finished) throw new Error(`task ${image.id} is finished`);
    const current = held();
    if (current && current.annotator !== annotator)
      throw new Error(`task ${image.id} is held by another annotator`);
    return current;
  };
  const requireHolder = (annotator: string) => {
    if (!refuseIfUnavailable(annotator))
      throw new Error(`you hold no lease on task ${image.id} (expired or never claimed)`);
  };

  setHandler(taskStateQuery, () => ({
    runId: input.runId,
    round: input.round,
    image,
    model: input.model,
    ...(input.prefill ? { prefill: input.prefill, rejectedPrefill: [...rejected] } : {}),
    holder: held(),
    masks: accepted.size,
    finished: finished !== null,
  }));

  setHandler(claimTaskUpdate, ({ annotator }) => lease(annotator), {
    validator: ({ annotator }) => {
      if (skippedBy.has(annotator)) throw new Error(`you skipped task ${image.id}`);
      refuseIfUnavailable(annotator);
    },
  });

  setHandler(
    submitMaskUpdate,
    (sub) => {
      // A repeated id gets the first submit's answer, once that one's mask is stored.
      let answer = accepted.get(sub.submissionId);
      if (!answer) {
        answer = acceptMask(sub);
        accepted.set(sub.submissionId, answer);
        answer.catch(() => accepted.delete(sub.submissionId)); // not stored: a retry may try again
      }
      return answer;
    },
    {
      validator: (sub) => {
        if (accepted.has(sub.submissionId)) return; // a repeat: answered with the first result
        requireHolder(sub.annotator);
        const problem = submissionProblem(sub, image.height, image.width);
        if (problem) throw new Error(problem);
      },
    },
  );

  setHandler(
    finishTaskUpdate,
    () => {
      finished = 'annotator';
      unlease();
      return { holder: null, masks: accepted.size, finished: true };
    },
    { validator: ({ annotator }) => requireHolder(annotator) },
  );

  setHandler(
    releaseTaskUpdate,
    ({ annotator }) => {
      skippedBy.add(annotator);
      unlease();
    },
    { validator: ({ annotator }) => requireHolder(annotator) },
  );

  setHandler(
    flagTaskUpdate,
    async ({ annotator, reason }) => {
      await storeFlag({
        outputUri: input.outputUri,
        flag: {
          run: input.runId,
          round: input.round,
          imageId: image.id,
          image: image.uri,
          annotator,
          reason,
        },
      });
      finished ??= 'flag';
      unlease();
    },
    {
      validator: ({ annotator, reason }) => {
        requireHolder(annotator);
        if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 500)
          throw new Error('a flag needs a reason of 1–500 characters');
      },
    },
  );

  setHandler(
    rejectPrefillUpdate,
    async ({ annotator, index, reason }) => {
      if (!rejected.has(index)) {
        rejected.add(index);
        const ref = { runId: input.runId, round: input.round, imageId: image.id };
        await stage2.storePrefillRejection({ outputUri: input.outputUri, ...ref, index, annotator, reason });
      }
      lease(annotator);
      return { rejected: [...rejected] };
    },
    {
      validator: ({ annotator, index, reason }) => {
        requireHolder(annotator);
        const masks = input.prefill?.masks ?? 0;
        if (!Number.isInteger(index) || index < 0 || index >= masks)
          throw new Error(`task ${image.id} has no pre-filled mask ${index} (it has ${masks})`);
        if (typeof reason !== 'string' || reason.length > 500)
          throw new Error('a deletion reason is a line of at most 500 characters');
      },
    },
  );

  setHandler(closeTaskSignal, () => {
    finished ??= 'round';
  });

  await condition(() => finished !== null);
  await condition(allHandlersFinished); // every accepted mask is stored before the task completes
  // The pre-filled masks nobody deleted join the image's annotations; a flagged image keeps none.
  let prefilled = 0;
  if (input.prefill && input.prefill.masks > 0 && finished !== 'flag') {
    const ref = { runId: input.runId, round: input.round, imageId: image.id, image: image.uri };
    ({ accepted: prefilled } = await stage2.acceptPrefilledMasks({
      outputUri: input.outputUri,
      ...ref,
      rejected: [...rejected],
    }));
  }
  return { masks: accepted.size, annotators, closedBy: finished!, ...(input.prefill ? { prefilled } : {}) };
}
