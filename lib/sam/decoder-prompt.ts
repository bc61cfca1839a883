// The SAM decoder's inputs for one prompt, as plain arrays: the same for onnxruntime-node (the
// workers, the simulated annotators) and onnxruntime-web (the browser tool). Points and boxes are
// given in original-image pixels and moved into the 1024 frame as the official SamPredictor does
// (sam-spec §1); without a box, a padding point with label -1 is appended, as in the official
// ONNX example.
import { ResizeLongestSide, type Size } from './resize-longest-side.ts';

export interface Prompt {
  /** Points as [x, y] in original-image pixels. */
  points?: [number, number][];
  /** 1 = foreground, 0 = background, one per point. */
  labels?: number[];
  /** XYXY box in original-image pixels. */
  box?: [number, number, number, number];
  /** Previous low-res logits (256×256) as the mask prompt. */
  maskInput?: Float32Array;
}

/**
 * The decoder outputs every caller reads: the low-res logits are upsampled exactly by
 * lib/amg/mask-upsample.ts, never taken from an export's own `masks` (see SamSession's Prediction).
 */
export const DECODER_OUTPUTS = ['iou_predictions', 'low_res_masks'] as const;

export const LOW_RES = 256;
export const LOW_RES_AREA = LOW_RES * LOW_RES;
/** The label of the padding point the official ONNX example appends when there is no box. */
export const PADDING_LABEL = -1;
const transform = new ResizeLongestSide(1024);

/** The decoder's feeds as [data, dims] pairs, by input name. */
export interface DecoderFeeds {
  point_coords: [Float32Array, number[]];
  point_labels: [Float32Array, number[]];
  mask_input: [Float32Array, number[]];
  has_mask_input: [Float32Array, number[]];
  orig_im_size: [Float32Array, number[]];
}

export function decoderFeeds(prompt: Prompt, originalSize: Size): DecoderFeeds {
  const { coords, labels } = promptPoints(prompt, originalSize);
  const n = labels.length;
  const [h, w] = originalSize;
  return {
    point_coords: [coords, [1, n, 2]],
    point_labels: [labels, [1, n]],
    mask_input: [prompt.maskInput ?? new Float32Array(LOW_RES_AREA), [1, 1, LOW_RES, LOW_RES]],
    has_mask_input: [new Float32Array([prompt.maskInput ? 1 : 0]), [1]],
    orig_im_size: [new Float32Array([h, w]), [2]],
  };
}

function promptPoints(prompt: Prompt, originalSize: Size): { coords: Float32Array; labels: Float32Array } {
  const points = prompt.points ?? [];
  const labels = prompt.labels ?? points.map(() => 1);
  if (labels.length !== points.length)
    throw new RangeError(`${points.length} points but ${labels.length} labels`);
  if (points.length === 0 && !prompt.box) throw new RangeError('a prompt needs at least one point or a box');
  const flat = points.flat();
  const allLabels = [...labels];
  if (prompt.box) {
    flat.push(...prompt.box);
    allLabels.push(2, 3);
  }
  const coords = Array.from(transform.applyCoords(flat, originalSize));
  if (!prompt.box) {
    coords.push(0, 0);
    allLabels.push(PADDING_LABEL);
  }
  return { coords: Float32Array.from(coords), labels: Float32Array.from(allLabels) };
}

/** The decoder's outputs for a prompt: SAM's 3 multimask candidates, or the single-mask output. */
export function pickMasks(
  iou: Float32Array,
  lowRes: Float32Array,
  multimask: boolean,
): { iouPredictions: number[]; lowResMasks: Float32Array[] } {
  const picks = multimask ? [1, 2, 3] : [0];
  return {
    iouPredictions: picks.map((k) => iou[k]!),
    lowResMasks: picks.map((k) => lowRes.slice(k * LOW_RES_AREA, (k + 1) * LOW_RES_AREA)),
  };
}
