// What becomes of a task's pre-filled masks (./prefill-store.ts): an annotator may delete one that
// is wrong, and that deletion is kept (runs/<run>/stage1/round-<k>/rejected/<image>/<index>.json,
// with the mask itself, who and why), never silently dropped. When the task closes, every
// pre-filled mask nobody deleted is accepted as one of the image's annotations, beside the masks
// people added, so the round's export, the training sets and the dataset count it.
//
// Both writes are idempotent (deterministic keys, written once): a retried activity changes nothing.
import type { ObjectStore } from '../object-store.ts';
import type { CocoRle } from '../rle.ts';
import { runLayout } from '../run-layout.ts';
import { storeAnnotation } from '../stage1/annotations.ts';
import { readPrefill } from './prefill-store.ts';

export interface PrefillRejection {
  run: string;
  round: number;
  imageId: number;
  /** The mask's index in the image's pre-fill file. */
  index: number;
  annotator: string;
  reason: string;
  /** The models that made it ("name@version"). */
  detector: string;
  sam: string;
  mask: CocoRle;
  rejectedAt: string;
}

/** The annotator of a kept pre-filled mask: the detector that proposed it, not a person. */
export function prefillAnnotator(detector: string): string {
  return `detector:${detector}`;
}

export class PrefillMissingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PrefillMissingError';
  }
}

async function prefillOf(out: ObjectStore, runId: string, imageId: number) {
  const key = runLayout.stage2Prefill(runId, imageId);
  const prefill = await readPrefill(out, key);
  if (!prefill) throw new PrefillMissingError(`${out.uri(key)} is missing or unreadable`);
  return prefill;
}

/** Keeps a deleted pre-filled mask with who deleted it and why; a repeat writes nothing. */
export async function storePrefillRejection(
  out: ObjectStore,
  input: { runId: string; round: number; imageId: number; index: number; annotator: string; reason: string },
): Promise<{ stored: boolean }> {
  const prefill = await prefillOf(out, input.runId, input.imageId);
  const mask = prefill.masks[input.index];
  if (!mask) throw new PrefillMissingError(`image ${input.imageId} has no pre-filled mask ${input.index}`);
  const record: PrefillRejection = {
    run: input.runId,
    round: input.round,
    imageId: input.imageId,
    index: input.index,
    annotator: input.annotator,
    reason: input.reason,
    detector: prefill.detector,
    sam: prefill.sam,
    mask: mask.segmentation,
    rejectedAt: new Date().toISOString(),
  };
  const key = runLayout.stage2Rejection(input.runId, input.round, input.imageId, input.index);
  const stored = await out.putIfAbsent(key, JSON.stringify(record) + '\n', {
    contentType: 'application/json',
  });
  return { stored };
}

/** Accepts every pre-filled mask of the image that is not in `rejected`; returns how many. */
export async function acceptPrefilledMasks(
  out: ObjectStore,
  input: { runId: string; round: number; imageId: number; image: string; rejected: readonly number[] },
): Promise<{ accepted: number; rejected: number }> {
  const prefill = await prefillOf(out, input.runId, input.imageId);
  const rejected = new Set(input.rejected);
  let accepted = 0;
  for (const [index, mask] of prefill.masks.entries()) {
    if (rejected.has(index)) continue;
    await storeAnnotation(out, {
      run: input.runId,
      round: input.round,
      imageId: input.imageId,
      image: input.image,
      annotator: prefillAnnotator(prefill.detector),
      submissionId: `prefill-${index}`,
      mask: mask.segmentation,
      seconds: 0,
      clicks: 0,
      model: prefill.sam,
      acceptedAt: new Date().toISOString(),
      prefilled: true,
    });
    accepted += 1;
  }
  return { accepted, rejected: rejected.size };
}
