// A simulated annotator's work on one image: its intent is a set of ground-truth masks; for each it
// clicks as ./click-simulator.ts does, on the decoder run over the image's stored embedding (never
// the encoder), and accepts the mask once it is good enough or the click budget is spent. Time is
// reported from a stated model, not measured: seconds per click and per accept, so that figures
// such as seconds per mask mean the same in every run.
import { compressRle, encodeMask, type CocoRle } from '../rle.ts';
import { clickUntil, type ClickDecoder } from './click-simulator.ts';

export interface AnnotatorModel {
  /** Accept once the mask reaches this IoU with the intended object. */
  targetIou: number;
  /** Accept whatever the mask is after this many clicks. */
  maxClicks: number;
  /** Skip objects smaller than this many pixels (a person would not label them). */
  minArea: number;
  secondsPerClick: number;
  secondsPerAccept: number;
}

/** 4 clicks and an accept make 14 s, the paper's seconds per mask at the end of stage 1. */
export const DEFAULT_ANNOTATOR: AnnotatorModel = {
  targetIou: 0.9,
  maxClicks: 8,
  minArea: 100,
  secondsPerClick: 2.5,
  secondsPerAccept: 4,
};

export interface AnnotatedMask {
  /** Index of the intended object in the truth list. */
  object: number;
  mask: CocoRle;
  clicks: number;
  seconds: number;
  /** IoU with the intended object when accepted. */
  iou: number;
}

/**
 * Annotates the intended objects of one image that are big enough, in the order given, up to
 * `maxMasks` accepted masks (the objects after those are never clicked).
 */
export async function annotateImage<E>(
  decoder: ClickDecoder<E>,
  embedding: E,
  truths: readonly Uint8Array[],
  h: number,
  w: number,
  model: AnnotatorModel = DEFAULT_ANNOTATOR,
  maxMasks = Infinity,
): Promise<AnnotatedMask[]> {
  const masks: AnnotatedMask[] = [];
  for (const [object, truth] of truths.entries()) {
    if (masks.length >= maxMasks) break;
    if (area(truth) < model.minArea) continue;
    const result = await clickUntil(decoder, embedding, truth, h, w, {
      targetIou: model.targetIou,
      maxClicks: model.maxClicks,
    });
    if (result.clicks.length === 0 || area(result.mask) === 0) continue; // nothing to accept
    masks.push({
      object,
      mask: compressRle(encodeMask(result.mask, h, w)),
      clicks: result.clicks.length,
      seconds: result.clicks.length * model.secondsPerClick + model.secondsPerAccept,
      iou: result.ious.at(-1)!,
    });
  }
  return masks;
}

function area(mask: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) n += 1;
  return n;
}
