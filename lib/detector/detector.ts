// The stage-2 "object" box detector (trainer/sae_trainer/detector.py): a package folder with
// detector.onnx and model.json ("sa-engine-detector/1"). Its input is a SAM image embedding, so a
// detector belongs to one SAM encoder: model.json names it, and a session refuses to run on
// another encoder's embeddings rather than return boxes that mean nothing.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import type { ImageEmbedding, SessionSettings } from '../sam/session.ts';
import { sessionOptions } from '../sam/session.ts';
import { decodeDetections, frameScale, type DecodeSettings, type Detection } from './decode.ts';

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

export class DetectorSession {
  private constructor(
    readonly pkg: DetectorPackage,
    private readonly session: ort.InferenceSession,
  ) {}

  /**
   * Opens the package's graph and checks it against model.json; with `samEncoderSha256` (the
   * digest of the SAM encoder whose embeddings it will read) also that it was trained on that one.
   */
  static async load(
    dir: string,
    options: { settings?: SessionSettings; samEncoderSha256?: string } = {},
  ): Promise<DetectorSession> {
    const pkg = await readDetectorPackage(dir);
    const expected = pkg.sam.encoderOnnxSha256;
    if (options.samEncoderSha256 && expected && options.samEncoderSha256 !== expected) {
      throw new DetectorPackageError(
        `${join(dir, 'model.json')}: detector ${pkg.name} ${pkg.version} was trained on the embeddings of ` +
          `${pkg.sam.model ?? 'another SAM model'} (encoder ${expected.slice(0, 12)}…), not on this ` +
          `SAM encoder's (${options.samEncoderSha256.slice(0, 12)}…); retrain it on this model's embeddings`,
      );
    }
    const path = join(dir, pkg.file);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(path, sessionOptions(options.settings ?? {}));
    } catch (err) {
      throw new DetectorPackageError(`${path}: not a loadable ONNX model (${(err as Error).message})`);
    }
    const io = (names: readonly string[]) => JSON.stringify([...names]);
    if (io(session.inputNames) !== io([pkg.input]) || io(session.outputNames) !== io(pkg.outputs)) {
      throw new DetectorPackageError(
        `${path} does not match its model.json: the graph reads ${io(session.inputNames)} and ` +
          `writes ${io(session.outputNames)}, model.json says ${io([pkg.input])} → ${io(pkg.outputs)}`,
      );
    }
    return new DetectorSession(pkg, session);
  }

  get modelId(): string {
    return `${this.pkg.name}@${this.pkg.version}`;
  }

  /** Boxes on the embedded image, best first (the package's decode settings unless given). */
  async detect(embedding: ImageEmbedding, settings: Partial<DecodeSettings> = {}): Promise<Detection[]> {
    const { grid, imageSize, input, outputs } = this.pkg;
    const dims = embedding.tensor.dims;
    if (dims.length !== 4 || dims[2] !== grid || dims[3] !== grid) {
      throw new DetectorPackageError(
        `detector ${this.modelId} reads (1, C, ${grid}, ${grid}) embeddings, got (${dims.join(', ')})`,
      );
    }
    const out = await this.session.run({ [input]: embedding.tensor });
    const maps = {
      scores: out[outputs[0]]!.data as Float32Array,
      boxes: out[outputs[1]]!.data as Float32Array,
      grid,
    };
    const scale = frameScale(imageSize, embedding.originalSize);
    return decodeDetections(maps, scale, embedding.originalSize, { ...this.pkg.decode, ...settings });
  }
}
