// A SAM model package: a folder with model.json, an image encoder and a mask decoder in ONNX
// (DESIGN.md "Model package"). The decoder is the official SAM export as it is (one prompt per
// run); a package may add a batched decoder of our own that takes many single-point prompts at once.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

export class ModelPackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelPackageError';
  }
}

const encoderSchema = z.object({
  file: z.string().min(1),
  input: z.string().default('input_image'),
  output: z.string().default('image_embeddings'),
  /**
   * nchw-normalized: (1,3,1024,1024) float32, normalised and zero-padded outside the graph.
   * hwc-resized: (h',w',3) float32 RGB 0..255, resized only; the graph normalises and pads
   * (samexporter's --use-preprocess).
   */
  layout: z.enum(['nchw-normalized', 'hwc-resized']).default('nchw-normalized'),
});

const batchedDecoderSchema = z.object({
  file: z.string().min(1),
  /** Inputs: image_embeddings (1,256,64,64), point_coords (B,N,2), point_labels (B,N). */
  inputs: z
    .object({
      imageEmbeddings: z.string().default('image_embeddings'),
      pointCoords: z.string().default('point_coords'),
      pointLabels: z.string().default('point_labels'),
    })
    .prefault({}),
  /** Outputs: iou_predictions (B,4), low_res_masks (B,4,256,256); index 0 = single-mask token. */
  outputs: z
    .object({
      iouPredictions: z.string().default('iou_predictions'),
      lowResMasks: z.string().default('low_res_masks'),
    })
    .prefault({}),
});

export const modelPackageSchema = z.object({
  name: z.string().min(1),
  version: z.union([z.string(), z.number()]).transform(String),
  encoder: encoderSchema,
  /** The official decoder export (sam-spec §2a): names, shapes and 4 outputs as they are. */
  decoder: z.object({ file: z.string().min(1) }),
  batchedDecoder: batchedDecoderSchema.nullable().default(null),
  imageSize: z.literal(1024).default(1024),
  embeddingShape: z
    .tuple([z.literal(1), z.literal(256), z.literal(64), z.literal(64)])
    .default([1, 256, 64, 64]),
});

export type ModelPackage = z.output<typeof modelPackageSchema> & { dir: string };

/** Reads and checks `<dir>/model.json`; file names in it are resolved against `dir`. */
export async function readModelPackage(dir: string): Promise<ModelPackage> {
  const file = join(dir, 'model.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ModelPackageError(`cannot read the model package ${file}: ${(err as Error).message}`);
  }
  const parsed = modelPackageSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ModelPackageError(`${file} is not a SAM model package: ${issues}`);
  }
  return { ...parsed.data, dir };
}
