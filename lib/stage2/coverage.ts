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
