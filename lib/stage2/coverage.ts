// What is left to annotate on a pre-filled image: the paper's stage-2 annotators were asked to
// label only the objects the pre-filled masks had not already got. An intended mask counts as
// covered when some pre-filled mask overlaps it with IoU ≥ minIou (0.5, as the rule).
import { maskIou } from '../stage1/click-simulator.ts';

export const COVERED_IOU = 0.5;

/** The intended masks (row-major 0/1) that no pre-filled mask covers, in their order. */
export function notYetCovered(
  intents: readonly Uint8Array[],
  prefilled: readonly Uint8Array[],
  minIou = COVERED_IOU,
): Uint8Array[] {
  return intents.filter((intent) => !prefilled.some((mask) => maskIou(intent, mask) >= minIou));
}

export interface PrefillReview {
  /** Indices of the pre-filled masks that match an intended object: kept. */
  keep: number[];
  /** Indices of those that match none: a person deletes them. */
  reject: number[];
  /** The intended objects no kept mask covers: what is left to label. */
  left: Uint8Array[];
}

/** A simulated annotator's review of an image's pre-filled masks against the objects it means to label. */
export function reviewPrefilled(
  intents: readonly Uint8Array[],
  prefilled: readonly Uint8Array[],
  minIou = COVERED_IOU,
): PrefillReview {
  const keep: number[] = [];
  const reject: number[] = [];
  prefilled.forEach((mask, index) =>
    (intents.some((intent) => maskIou(intent, mask) >= minIou) ? keep : reject).push(index),
  );
  return {
    keep,
    reject,
    left: notYetCovered(
      intents,
      keep.map((i) => prefilled[i]!),
      minIou,
    ),
  };
}
