// Stage 2's pre-filled masks in storage, one file per image (runs/<run>/stage2/prefill/<id>.json),
// computed on an inference worker from the image's stored embedding (the round computed it for
// the annotators: the detector and the box prompts cost no encoder run). The annotation tool and
// the simulated annotators read the file; the dataset keeps the masks people did not delete.
//
// Idempotent: an image whose file was made by the same SAM and detector is not done again. An
// image without a usable embedding is reported with its reason and the batch goes on.
import { z } from 'zod';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import { compressRle } from '../rle.ts';
import { runLayout } from '../run-layout.ts';
import { decodeEmbeddingFile, EmbeddingFileError } from '../sam/embedding-file.ts';
import type { SamSession } from '../sam/session.ts';
import type { DetectorSession } from '../detector/detector.ts';
import { prefillMasks, type PrefillSettings } from './prefill.ts';

export const PREFILL_FORMAT = 'sa-engine-prefill/1';

const boxSchema = z.tuple([z.number(), z.number(), z.number(), z.number()]);

export const prefillFileSchema = z.object({
  format: z.literal(PREFILL_FORMAT),
  image: z.number().int().nonnegative(),
  /** The models that made it ("name@version"). */
  sam: z.string(),
  detector: z.string(),
  /** [h, w] of the image. */
  size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
  detections: z.array(z.object({ box: boxSchema, score: z.number() })),
  masks: z.array(
    z.object({
      /** COCO compressed RLE. */
      segmentation: z.object({ size: z.tuple([z.number(), z.number()]), counts: z.string() }),
      /** Inclusive x0 y0 x1 y1 of the mask. */
      box: boxSchema,
      predicted_iou: z.number(),
      stability_score: z.number(),
      /** The detection whose box prompted it. */
      detection_score: z.number(),
    }),
  ),
});
export type PrefillFile = z.infer<typeof prefillFileSchema>;

export interface PrefillImagesResult {
  prefilled: number;
  reused: number;
  /** Pre-filled masks in this batch's files (made or reused). */
  masks: number;
  /** Each pre-filled image with its mask count, in the order given. */
  images: { id: number; masks: number }[];
  failed: { id: number; error: string }[];
}

export async function prefillImages(
  out: ObjectStore,
  sam: SamSession,
  detector: DetectorSession,
  opts: {
    runId: string;
    imageIds: readonly number[];
    settings: PrefillSettings;
    onProgress?: (done: number) => void;
  },
): Promise<PrefillImagesResult> {
  const result: PrefillImagesResult = { prefilled: 0, reused: 0, masks: 0, images: [], failed: [] };
  for (const [done, id] of opts.imageIds.entries()) {
    const key = runLayout.stage2Prefill(opts.runId, id);
    const existing = await readPrefill(out, key);
    if (existing && existing.sam === sam.modelId && existing.detector === detector.modelId) {
      result.reused += 1;
      result.masks += existing.masks.length;
      result.images.push({ id, masks: existing.masks.length });
    } else {
      const made = await prefillOne(out, sam, detector, opts.runId, id, opts.settings);
      if (typeof made === 'string') {
        result.failed.push({ id, error: made });
      } else {
        await out.put(key, JSON.stringify(made), { contentType: 'application/json' });
        result.prefilled += 1;
        result.masks += made.masks.length;
        result.images.push({ id, masks: made.masks.length });
      }
    }
    opts.onProgress?.(done + 1);
  }
  return result;
}

/** One image's file, or why it cannot be made when its embedding is at fault. */
async function prefillOne(
  out: ObjectStore,
  sam: SamSession,
  detector: DetectorSession,
  runId: string,
  id: number,
  settings: PrefillSettings,
): Promise<PrefillFile | string> {
  const key = runLayout.embedding(runId, id);
  let embedding;
  try {
    const { header, data } = decodeEmbeddingFile(await out.get(key), out.uri(key));
    embedding = sam.embeddingFrom(out.uri(key), header, data);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return `no embedding at ${out.uri(key)}`;
    if (err instanceof EmbeddingFileError) return err.message;
    throw err; // storage down: the batch is retried
  }
  const { detections, masks } = await prefillMasks(sam, detector, embedding, settings);
  return {
    format: PREFILL_FORMAT,
    image: id,
    sam: sam.modelId,
    detector: detector.modelId,
    size: embedding.originalSize,
    detections: detections.map((d) => ({ box: d.box, score: d.score })),
    masks: masks.map((m) => ({
      segmentation: compressRle(m.rle),
      box: m.box,
      predicted_iou: m.predictedIou,
      stability_score: m.stabilityScore,
      detection_score: m.detection.score,
    })),
  };
}

/** The stored file, or undefined when there is none or it cannot be read (it is made again). */
export async function readPrefill(out: ObjectStore, key: string): Promise<PrefillFile | undefined> {
  let bytes: Buffer;
  try {
    bytes = await out.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
  try {
    const parsed = prefillFileSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // not JSON
  }
}
