// The messages of a stage-1 annotation task workflow (workflows/stage1-task.ts) and the names
// that find it: what the annotation service, the round's activities and the tests send to a task,
// kept below all of them so that none imports the workflow module for its message definitions.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Submission } from './submission.ts';

export interface AnnotationTaskInput {
  runId: string;
  outputUri: string;
  round: number;
  image: { id: number; uri: string; width: number; height: number };
  /** The model whose decoder assists ("name@version"), recorded with each mask. */
  model: string;
  /** How long a claim holds the task without a submission. */
  leaseSeconds: number;
  /** Stage 2: the image arrives with this many pre-filled masks (lib/stage2/prefill-store.ts). */
  prefill?: { detector: string; masks: number };
}

export interface Lease {
  annotator: string;
  /** Epoch milliseconds (workflow time). */
  expiresAt: number;
}

export interface AnnotationTaskState {
  holder: Lease | null;
  masks: number;
  finished: boolean;
}

/** What the annotation service needs to serve a task: its image, and who may see it now. */
export interface AnnotationTaskView extends AnnotationTaskState {
  runId: string;
  round: number;
  image: AnnotationTaskInput['image'];
  model: string;
  prefill?: AnnotationTaskInput['prefill'];
  /** Indices of the pre-filled masks deleted so far. */
  rejectedPrefill?: number[];
}

export interface AnnotationTaskResult {
  masks: number;
  /** Annotators who submitted, in order of their first mask. */
  annotators: string[];
  closedBy: 'annotator' | 'round' | 'flag';
  /** Stage 2: pre-filled masks accepted with the image. */
  prefilled?: number;
}

export interface SubmitResult {
  submissionId: string;
  /** The mask's index on this image; the same for a repeated submission. */
  index: number;
  leaseExpiresAt: number;
}

export const claimTaskUpdate = defineUpdate<Lease, [{ annotator: string }]>('claim');
export const submitMaskUpdate = defineUpdate<SubmitResult, [Submission]>('submit');
/** The annotator is done with the image: the task completes. */
export const finishTaskUpdate = defineUpdate<AnnotationTaskState, [{ annotator: string }]>('finish');
/** The annotator skips the image: the task goes back to the pool, for others than them. */
export const releaseTaskUpdate = defineUpdate<void, [{ annotator: string }]>('release');
/** The annotator says the image cannot be annotated (why, in a line): the task completes. */
export const flagTaskUpdate = defineUpdate<void, [{ annotator: string; reason: string }]>('flag');
/** The annotator deletes pre-filled mask `index` (why, in a line): it is kept as rejected. */
export const rejectPrefillUpdate = defineUpdate<
  { rejected: number[] },
  [{ annotator: string; index: number; reason: string }]
>('rejectPrefill');
/** The round has closed: the task completes with what it has. */
export const closeTaskSignal = defineSignal('close');
export const taskStateQuery = defineQuery<AnnotationTaskView>('state');

/** A lease that is free to claim in a visibility query: `SaeLeaseUntil < <now>`. */
export const NO_LEASE = new Date(0);

/** The value of SaeRound on round `round` of run `runId` and on its tasks. */
export function roundTag(runId: string, round: number): string {
  return `${runId}/round-${round}`;
}

export function annotationTaskWorkflowId(runId: string, round: number, imageId: number): string {
  return `${runId}/stage1/round-${round}/${imageId}`;
}
