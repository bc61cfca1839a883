// Stage 2's pre-filled masks (paper §4, "semi-automatic"): the detector's boxes prompt SAM, and
// the masks SAM is confident about arrive in a task already drawn, so that annotators spend their
// time on the objects nobody has yet. Confident = the automatic generator's two filters
// (predicted IoU and stability) on the box prompt's single-mask output, then box NMS among them.
//
// A SAM never trained with box prompts (sae-ref v4 was trained on points only) returns empty masks
// for a box. For such a model `prompt: 'centre-point'` prompts with each box's centre instead and
// keeps SAM's three multimask outputs as candidates, as the automatic generator does for a point.
import { maskCandidatesFromBatch } from '../amg/mask-filters.ts';
import { planMaskUpsample } from '../amg/mask-upsample.ts';
import { batchedNms } from '../amg/nms.ts';
import type { Box, MaskCandidate } from '../amg/types.ts';
import type { DecodeSettings, Detection } from '../detector/decode.ts';
import type { DetectorSession } from '../detector/detector.ts';
import { MULTIMASK_INDICES, type ImageEmbedding, type SamSession } from '../sam/session.ts';

export type PrefillPrompt = 'box' | 'centre-point';

export interface PrefillSettings {
  /** How a detection prompts SAM: its box (the paper), or its box's centre as a point. */
  prompt: PrefillPrompt;
  /** Keep a mask whose predicted IoU is above this. */
  predIouThresh: number;
  /** Keep a mask whose stability score is at least this. */
  stabilityScoreThresh: number;
  /** Between kept masks: suppress a mask whose box overlaps a better one's by more than this. */
  boxNmsThresh: number;
  /** Box prompts per decoder run. */
  batchSize: number;
  /** The detector's score threshold, NMS and box budget; absent ones are its package's. */
  detect?: Partial<DecodeSettings>;
}

export interface PrefilledMask extends MaskCandidate {
  /** The detection whose box prompted it. */
  detection: Detection;
}

export interface Prefill {
  detections: Detection[];
  masks: PrefilledMask[];
}

/** Detector boxes on one embedded image → the confident masks SAM draws from them. */
export async function prefillMasks(
  sam: SamSession,
  detector: DetectorSession,
  embedding: ImageEmbedding,
  settings: PrefillSettings,
): Promise<Prefill> {
  const detections = await detector.detect(embedding, settings.detect);
  const masks: PrefilledMask[] = [];
  for (let start = 0; start < detections.length; start += settings.batchSize) {
    const batch = detections.slice(start, start + settings.batchSize);
    masks.push(...(await masksFromBoxes(sam, embedding, batch, settings)));
  }
  const keep = batchedNms(
    masks.map((m) => m.box),
    masks.map((m) => m.predictedIou),
    settings.boxNmsThresh,
  );
  return { detections, masks: keep.map((i) => masks[i]!) };
}

async function masksFromBoxes(
  sam: SamSession,
  embedding: ImageEmbedding,
  detections: Detection[],
  settings: PrefillSettings,
): Promise<PrefilledMask[]> {
  const [h, w] = embedding.originalSize;
  const centres = new Float64Array(detections.flatMap(({ box }) => centre(box)));
  const output =
    settings.prompt === 'box'
      ? await sam.decodeBoxes(embedding, new Float64Array(detections.flatMap((d) => d.box)))
      : await sam.decodePoints(embedding, centres);
  const kept = maskCandidatesFromBatch(
    output,
    centres,
    { cropBox: [0, 0, w, h], imageSize: [h, w], plan: planMaskUpsample(h, w) },
    { predIouThresh: settings.predIouThresh, stabilityScoreThresh: settings.stabilityScoreThresh },
    // A box prompt reads SAM's single-mask output; a point its three multimask outputs.
    settings.prompt === 'box' ? [0] : MULTIMASK_INDICES,
  );
  // Candidates come in prompt order, each with its prompt's centre: walk the prompts alongside.
  const result: PrefilledMask[] = [];
  let i = 0;
  for (const mask of kept) {
    while (mask.point[0] !== centres[2 * i] || mask.point[1] !== centres[2 * i + 1]) i += 1;
    result.push({ ...mask, detection: detections[i]! });
  }
  return result;
}

function centre([x0, y0, x1, y1]: Box): [number, number] {
  return [(x0 + x1) / 2, (y0 + y1) / 2];
}
