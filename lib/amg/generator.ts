// The automatic mask generator (SamAutomaticMaskGenerator, sam-spec §3) over a SamSession: for
// each crop, embed it, prompt it with a point grid in batches, filter and NMS the masks; then merge
// crops and postprocess. The model-free steps live in lib/amg/; this file only sequences them and
// times each phase (the benchmark reports the split).
import { generateCropBoxes } from './crop-boxes.ts';
import { maskCandidatesFromBatch } from './mask-filters.ts';
import { planMaskUpsample } from './mask-upsample.ts';
import { nmsWithinCrop } from './nms.ts';
import { buildAllLayerPointGrids, scalePointGrid } from './point-grids.ts';
import { finishMasks } from './postprocess.ts';
import { DEFAULT_AMG_OPTIONS, type AmgOptions, type Box, type MaskCandidate } from './types.ts';
import type { PixelImage } from '../sam/resize-longest-side.ts';
import { MULTIMASK_INDICES, type SamSession } from '../sam/session.ts';

export interface GeneratorSettings extends AmgOptions {
  pointsPerSide: number;
  pointsPerBatch: number;
  cropNLayers: number;
  cropOverlapRatio: number;
  cropNPointsDownscaleFactor: number;
}

export const DEFAULT_GENERATOR_SETTINGS: Readonly<GeneratorSettings> = Object.freeze({
  ...DEFAULT_AMG_OPTIONS,
  pointsPerSide: 32,
  pointsPerBatch: 64,
  cropNLayers: 0,
  cropOverlapRatio: 512 / 1500,
  cropNPointsDownscaleFactor: 1,
});

/** Milliseconds spent per phase, summed over crops. */
export interface GeneratorTimings {
  encode: number;
  decode: number;
  filter: number;
  postprocess: number;
  prompts: number;
}

export interface GeneratorResult {
  masks: MaskCandidate[];
  timings: GeneratorTimings;
}

export class AutomaticMaskGenerator {
  readonly settings: GeneratorSettings;
  private readonly pointGrids: Float64Array[];

  constructor(
    private readonly session: SamSession,
    settings: Partial<GeneratorSettings> = {},
  ) {
    this.settings = { ...DEFAULT_GENERATOR_SETTINGS, ...settings };
    const s = this.settings;
    this.pointGrids = buildAllLayerPointGrids(s.pointsPerSide, s.cropNLayers, s.cropNPointsDownscaleFactor);
  }

  /** All masks of one image, in the official output order. `onCrop` reports progress. */
  async generate(
    image: PixelImage,
    onCrop?: (done: number, total: number) => void,
  ): Promise<GeneratorResult> {
    const timings: GeneratorTimings = { encode: 0, decode: 0, filter: 0, postprocess: 0, prompts: 0 };
    const { cropBoxes, layerIdxs } = generateCropBoxes(
      image.height,
      image.width,
      this.settings.cropNLayers,
      this.settings.cropOverlapRatio,
    );
    const perCrop: MaskCandidate[][] = [];
    for (const [c, cropBox] of cropBoxes.entries()) {
      perCrop.push(await this.processCrop(image, cropBox, this.pointGrids[layerIdxs[c]!]!, timings));
      onCrop?.(c + 1, cropBoxes.length);
    }
    const started = performance.now();
    const masks = finishMasks(perCrop, this.settings);
    timings.postprocess += performance.now() - started;
    return { masks, timings };
  }

  private async processCrop(
    image: PixelImage,
    cropBox: Box,
    grid: Float64Array,
    timings: GeneratorTimings,
  ): Promise<MaskCandidate[]> {
    const [x0, y0, x1, y1] = cropBox;
    const cropW = x1 - x0;
    const cropH = y1 - y0;
    let started = performance.now();
    const embedding = await this.session.embed(cropImage(image, cropBox));
    timings.encode += performance.now() - started;

    const points = scalePointGrid(grid, cropW, cropH);
    const context = {
      cropBox,
      imageSize: [image.height, image.width] as [number, number],
      plan: planMaskUpsample(cropH, cropW),
    };
    const candidates: MaskCandidate[] = [];
    const perBatch = this.settings.pointsPerBatch * 2;
    for (let start = 0; start < points.length; start += perBatch) {
      const batchPoints = points.subarray(start, start + perBatch);
      started = performance.now();
      const batch = await this.session.decodePoints(embedding, batchPoints);
      timings.decode += performance.now() - started;
      timings.prompts += batch.count;
      started = performance.now();
      candidates.push(
        ...maskCandidatesFromBatch(batch, batchPoints, context, this.settings, MULTIMASK_INDICES),
      );
      timings.filter += performance.now() - started;
      // Mask filtering is synchronous work: let the event loop breathe between batches so a worker
      // in the same process keeps heartbeating and answering workflow tasks.
      await new Promise((resolve) => setImmediate(resolve));
    }
    started = performance.now();
    const kept = nmsWithinCrop(candidates, this.settings.boxNmsThresh);
    timings.filter += performance.now() - started;
    return kept;
  }
}

/** image[y0:y1, x0:x1] of an HWC RGB image (a view-free copy, as numpy slicing + set_image does). */
export function cropImage(image: PixelImage, [x0, y0, x1, y1]: Box): PixelImage {
  if (x0 === 0 && y0 === 0 && x1 === image.width && y1 === image.height) return image;
  const w = x1 - x0;
  const h = y1 - y0;
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const from = ((y0 + y) * image.width + x0) * 3;
    data.set(image.data.subarray(from, from + w * 3), y * w * 3);
  }
  return { data, width: w, height: h, channels: 3 };
}
