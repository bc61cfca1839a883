// What an annotator submits for a task: one accepted mask, how it was made, and an id of its own so
// that a retried submission is stored once. Checked in the task workflow's Update validator, before
// anything is written, so this is plain code with no imports but the RLE codec.
import { decompressRle, rleArea, type CocoRle } from '../rle.ts';

export interface Submission {
  annotator: string;
  /** Chosen by the client, unique per mask; a second submit with the same id is the same mask. */
  submissionId: string;
  /** The mask as COCO compressed RLE at the image's size. */
  mask: CocoRle;
  /** First click to accept, as the tool's timer measured it. */
  seconds: number;
  clicks: number;
}

/** An id that is safe as a storage key segment. */
const SUBMISSION_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Why a submission for an image of this size cannot be accepted, or undefined when it can. */
export function submissionProblem(sub: Submission, height: number, width: number): string | undefined {
  if (typeof sub !== 'object' || sub === null) return 'the submission is not an object';
  if (typeof sub.submissionId !== 'string' || !SUBMISSION_ID.test(sub.submissionId))
    return 'submissionId must be 1–64 letters, digits, "-" or "_"';
  if (!(Number.isFinite(sub.seconds) && sub.seconds >= 0)) return 'seconds must be a number ≥ 0';
  if (!(Number.isInteger(sub.clicks) && sub.clicks >= 0)) return 'clicks must be a whole number ≥ 0';
  const mask = sub.mask as Partial<CocoRle> | undefined;
  if (!mask || !Array.isArray(mask.size) || typeof mask.counts !== 'string')
    return 'mask must be COCO RLE: { size: [h, w], counts: "..." }';
  const [h, w] = mask.size;
  if (h !== height || w !== width) return `the mask is ${w}×${h} (w×h), the image ${width}×${height}`;
  let area: number;
  try {
    area = rleArea(decompressRle(mask as CocoRle));
  } catch (err) {
    return `the mask's RLE is malformed: ${(err as Error).message}`;
  }
  if (area === 0) return 'the mask is empty';
  return undefined;
}
