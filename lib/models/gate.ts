// The evaluation gate of a retrain (the paper retrained SAM 6 times in stage 1 and 11 in all; a
// model that does not help the annotators must not reach them): the candidate and the champion
// are measured on the same held-out set in the same workflow, and the candidate is promoted only
// when its 1-click mIoU rises by at least `minGain` and its NoC@90 gets worse by at most
// `maxNoc90Loss` clicks. Pure: the workflow calls it on the two evaluations.
import type { EvaluateDetectorResult, EvaluateSamResult } from '../training/contract.ts';

/** The alias of the version that assists annotators and that candidates must beat. */
export const CHAMPION = 'champion';

export interface GateSettings {
  /** Least rise of 1-click mIoU over the champion (δ). */
  minGain: number;
  /** Most NoC@90 may rise (more clicks to reach IoU 0.9) over the champion (ε). */
  maxNoc90Loss: number;
}

export interface GateDecision {
  promoted: boolean;
  reason: string;
}

export function gateDecision(
  candidate: EvaluateSamResult,
  champion: EvaluateSamResult | null,
  gate: GateSettings,
): GateDecision {
  const miou = candidate.miou_1click;
  const noc = candidate.noc90;
  if (miou === undefined || noc === undefined || candidate.masks === 0) {
    return { promoted: false, reason: `the evaluation set gave no figures (${candidate.masks} masks)` };
  }
  if (champion === null) return { promoted: true, reason: 'no champion yet: the first version becomes it' };
  if (champion.miou_1click === undefined || champion.noc90 === undefined) {
    return { promoted: true, reason: 'the champion has no figures on this set' };
  }
  const gain = miou - champion.miou_1click;
  const nocLoss = noc - champion.noc90;
  const figures =
    `1-click mIoU ${champion.miou_1click.toFixed(3)} → ${miou.toFixed(3)} (${signed(gain)}, needs ≥ ${signed(gate.minGain)}), ` +
    `NoC@90 ${champion.noc90.toFixed(2)} → ${noc.toFixed(2)} (${signed(nocLoss)}, allowed ≤ ${signed(gate.maxNoc90Loss)})`;
  if (gain < gate.minGain) return { promoted: false, reason: `refused: ${figures}` };
  if (nocLoss > gate.maxNoc90Loss) return { promoted: false, reason: `refused: ${figures}` };
  return { promoted: true, reason: `promoted: ${figures}` };
}

/** Stage 2's detector gate: box AP (COCOeval, class-agnostic) must rise by at least `minGain`. */
export interface DetectorGateSettings {
  minGain: number;
}

/**
 * A detector candidate against the champion on the same held-out boxes; `champion` null when there
 * is none or it cannot be measured on this SAM's embeddings (it reads another encoder).
 */
export function detectorGateDecision(
  candidate: EvaluateDetectorResult,
  champion: EvaluateDetectorResult | null,
  gate: DetectorGateSettings,
  noChampion = 'no champion yet: the first version becomes it',
): GateDecision {
  if (candidate.boxes === 0) return { promoted: false, reason: 'the evaluation set has no boxes' };
  if (champion === null) return { promoted: true, reason: noChampion };
  const gain = candidate.AP - champion.AP;
  const figures =
    `box AP ${champion.AP.toFixed(3)} → ${candidate.AP.toFixed(3)} (${signed(gain)}, needs ≥ ${signed(gate.minGain)}), ` +
    `AR@100 ${champion.AR100.toFixed(3)} → ${candidate.AR100.toFixed(3)}`;
  return gain >= gate.minGain
    ? { promoted: true, reason: `promoted: ${figures}` }
    : { promoted: false, reason: `refused: ${figures}` };
}

function signed(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(3)}`;
}
