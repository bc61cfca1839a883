// A stage-2 detector package: a folder with detector.onnx and model.json ("sa-engine-detector/1",
// written by trainer/sae_trainer/detector_train.py). Read without onnxruntime, so the registry can
// check a package it stores; lib/detector/detector.ts runs it.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DecodeSettings } from './decode.ts';

export const DETECTOR_PACKAGE_FORMAT = 'sa-engine-detector/1';

export class DetectorPackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DetectorPackageError';
  }
}

const tensorSpec = z.object({ name: z.string().min(1), shape: z.array(z.union([z.string(), z.number()])) });

const detectorPackageSchema = z.object({
  format: z.literal(DETECTOR_PACKAGE_FORMAT),
  name: z.string().min(1).nullable().default(null),
  version: z.union([z.string(), z.number()]).nullable().default(null),
  file: z.string().min(1),
  image_size: z.literal(1024),
  stride: z.literal(16),
  input: tensorSpec,
  outputs: z.tuple([tensorSpec, tensorSpec]),
  sam: z.object({
    /** The SAM model it was trained on, e.g. "sae-ref@v4". */
    model: z.string().min(1).optional(),
    /** SHA-256 of that model's encoder.onnx: the embeddings this detector can read. */
    encoder_onnx_sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .optional(),
  }),
  decode: z.object({
    score_threshold: z.number().min(0).max(1),
    nms_iou: z.number().min(0).max(1),
    max_detections: z.number().int().positive(),
  }),
  metrics: z.record(z.string(), z.unknown()).default({}),
});

export interface DetectorPackage {
  dir: string;
  name: string;
  version: string;
  file: string;
  imageSize: number;
  grid: number;
  input: string;
  /** [scores, boxes] output names. */
  outputs: [string, string];
  sam: { model?: string; encoderOnnxSha256?: string };
  decode: DecodeSettings;
}

export async function readDetectorPackage(dir: string): Promise<DetectorPackage> {
  const file = join(dir, 'model.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new DetectorPackageError(`cannot read the detector package ${file}: ${(err as Error).message}`);
  }
  const parsed = detectorPackageSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new DetectorPackageError(`${file} is not a detector package: ${issues}`);
  }
  const pkg = parsed.data;
  return {
    dir,
    name: pkg.name ?? 'detector',
    version: String(pkg.version ?? 'unversioned'),
    file: pkg.file,
    imageSize: pkg.image_size,
    grid: pkg.image_size / pkg.stride,
    input: pkg.input.name,
    outputs: [pkg.outputs[0].name, pkg.outputs[1].name],
    sam: { model: pkg.sam.model, encoderOnnxSha256: pkg.sam.encoder_onnx_sha256 },
    decode: {
      scoreThreshold: pkg.decode.score_threshold,
      nmsIou: pkg.decode.nms_iou,
      maxDetections: pkg.decode.max_detections,
    },
  };
}

/** SHA-256 of a SAM package's encoder file, what a detector's model.json names. */
export async function encoderDigest(samPackageDir: string, encoderFile: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(join(samPackageDir, encoderFile)))
    .digest('hex');
}
