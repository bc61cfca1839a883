// A SAM model package: a folder with model.json, an image encoder and a mask decoder in ONNX
// (DESIGN.md "Model package"). The decoder is the official SAM export as it is (one prompt per
// run); a package may add a batched decoder of our own that takes many prompts at once, and the
// same decoder with its attention folded onto the prompt tokens, which SamSession then uses for
// clicks and prompt batches alike.
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { DEFAULT_AMG_OPTIONS } from '../amg/types.ts';
import { DECODER_OUTPUTS } from './decoder-prompt.ts';
import { externalDataLocations, pruneOnnxOutputs } from './onnx-prune.ts';

export class ModelPackageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelPackageError';
  }
}

// model.json as trainer/sae_trainer/export.py writes it ("sa-engine-model/1"). To use a checkpoint
// exported elsewhere (the official decoder export, samexporter's encoders), write a model.json of
// this shape next to the .onnx files: only the fields below are read.
const named = z.object({ name: z.string().min(1) });

const encoderSchema = z.object({
  file: z.string().min(1),
  input: named.prefault({ name: 'input_image' }),
  output: named.prefault({ name: 'image_embeddings' }),
  /**
   * false: (1,3,1024,1024) float32, normalised and zero-padded outside the graph (NCHW).
   * true: (h',w',3) float32 RGB 0..255, resized only; the graph normalises and pads
   * (samexporter's --use-preprocess, HWC).
   */
  preprocess_in_graph: z.boolean().default(false),
});

const batchedDecoderSchema = z.object({
  file: z.string().min(1),
  /** image_embeddings (1,256,64,64), point_coords (B,N,2), point_labels (B,N), mask_input (B,1,256,256), has_mask_input (B). */
  inputs: z.array(named).default([]),
  /** iou_predictions (B,4), low_res_masks (B,4,256,256); index 0 is the single-mask token. */
  outputs: z.array(named).default([]),
});

/**
 * The automatic mask generator's filter thresholds measured for this model (scripts/calibrate-amg.ts).
 * The official 0.88 / 0.95 are ViT-H's; a run config uses these with `stage3.thresholds: model`.
 */
const amgCalibrationSchema = z.object({
  pred_iou_thresh: z.number().min(0).max(1),
  stability_score_thresh: z.number().min(0).max(1),
  /** The grid the thresholds were measured with (the precision behind them depends on it). */
  points_per_side: z.number().int().positive(),
  /** The images, e.g. "sa-engine synth --images 20 --seed 7777" (never the training set). */
  measured_on: z.string().min(1),
  /** How the thresholds were chosen. */
  rule: z.string().min(1),
  /** What the AMG scored at these thresholds on those images (precision, recall, masks per image, ...). */
  figures: z.record(z.string(), z.number()).default({}),
  /** Set when the held-out images gave no basis to choose and the parent's pair was kept, e.g. "sam v1". */
  inherited_from: z.string().min(1).optional(),
});

export const MODEL_PACKAGE_FORMAT = 'sa-engine-model/1';

export const modelPackageSchema = z.object({
  format: z.literal(MODEL_PACKAGE_FORMAT),
  name: z.string().min(1).nullable().default(null),
  version: z.union([z.string(), z.number()]).nullable().default(null),
  image_size: z.literal(1024).default(1024),
  embedding_shape: z
    .tuple([z.literal(1), z.literal(256), z.literal(64), z.literal(64)])
    .default([1, 256, 64, 64]),
  encoder: encoderSchema,
  /** The official decoder export (sam-spec §2a): names, shapes and 4 outputs as they are. */
  decoder: z.object({ file: z.string().min(1) }),
  decoder_batched: batchedDecoderSchema.nullable().default(null),
  /**
   * The batched decoder's contract and function, its cross attentions computed on the prompt
   * tokens' side (trainer/sae_trainer/folded_attention.py): 0.57 of the multiply-adds for a click.
   */
  decoder_folded: batchedDecoderSchema.nullable().default(null),
  amg_calibration: amgCalibrationSchema.nullable().default(null),
});

export interface AmgCalibration {
  predIouThresh: number;
  stabilityScoreThresh: number;
  pointsPerSide: number;
  measuredOn: string;
  rule: string;
  figures: Record<string, number>;
}

export interface ModelPackage {
  dir: string;
  name: string;
  version: string;
  encoder: { file: string; input: string; output: string; preprocessInGraph: boolean };
  decoder: { file: string };
  batchedDecoder: { file: string } | null;
  foldedDecoder: { file: string } | null;
  /** model.json `amg_calibration`, or null when the package has none. */
  amgCalibration: AmgCalibration | null;
}

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
  const pkg = parsed.data;
  return {
    dir,
    // Unnamed packages (e.g. converted checkpoints) are named after their folder.
    name: pkg.name ?? basename(dir),
    version: String(pkg.version ?? 'unversioned'),
    encoder: {
      file: pkg.encoder.file,
      input: pkg.encoder.input.name,
      output: pkg.encoder.output.name,
      preprocessInGraph: pkg.encoder.preprocess_in_graph,
    },
    decoder: pkg.decoder,
    batchedDecoder: pkg.decoder_batched ? { file: pkg.decoder_batched.file } : null,
    foldedDecoder: pkg.decoder_folded ? { file: pkg.decoder_folded.file } : null,
    amgCalibration: pkg.amg_calibration
      ? {
          predIouThresh: pkg.amg_calibration.pred_iou_thresh,
          stabilityScoreThresh: pkg.amg_calibration.stability_score_thresh,
          pointsPerSide: pkg.amg_calibration.points_per_side,
          measuredOn: pkg.amg_calibration.measured_on,
          rule: pkg.amg_calibration.rule,
          figures: pkg.amg_calibration.figures,
        }
      : null,
  };
}

/**
 * model.json's text with `amg_calibration` as its last field (replaced when it is there), the rest
 * byte for byte as it was: the trainer's export writes it with Python's json module (0.0, 5.3e-05,
 * \u escapes), and the registry's lineage records its SHA-256.
 */
export function withAmgCalibration(text: string, calibration: object): string {
  const existing = text.search(/,\s*"amg_calibration":/);
  const base = existing >= 0 ? text.slice(0, existing) : text.replace(/\s*\}\s*$/, '');
  const block = JSON.stringify(calibration, null, 2).replace(/\n/g, '\n  ');
  const out = `${base},\n  "amg_calibration": ${block}\n}`;
  const expected = { ...(JSON.parse(text) as Record<string, unknown>), amg_calibration: calibration };
  const fields = out.match(/"amg_calibration":/g)?.length ?? 0;
  if (fields !== 1 || JSON.stringify(JSON.parse(out)) !== JSON.stringify(expected))
    throw new ModelPackageError(
      'amg_calibration is not the last field of model.json; cannot update it in place',
    );
  return out;
}

/**
 * The two thresholds of a parsed model.json's `amg_calibration` (and the version they were
 * inherited from, if they were), or null when it has none (or not one this reads).
 */
export function amgThresholdsOf(
  modelJson: unknown,
): { predIouThresh: number; stabilityScoreThresh: number; inheritedFrom?: string } | null {
  const parsed = amgCalibrationSchema.safeParse(
    (modelJson as { amg_calibration?: unknown } | null)?.amg_calibration,
  );
  if (!parsed.success) return null;
  const { pred_iou_thresh, stability_score_thresh, inherited_from } = parsed.data;
  return {
    predIouThresh: pred_iou_thresh,
    stabilityScoreThresh: stability_score_thresh,
    ...(inherited_from !== undefined ? { inheritedFrom: inherited_from } : {}),
  };
}

/** Where the AMG's filter thresholds come from (run config `stage3.thresholds`). */
export type ThresholdSource = 'official' | 'model';

export interface ThresholdSettings {
  thresholds?: ThresholdSource;
  /** The config's values; null (or absent) when `thresholds` is "model". */
  predIouThresh?: number | null;
  stabilityScoreThresh?: number | null;
}

/**
 * The AMG's predIouThresh and stabilityScoreThresh for a run on this package: the config's own
 * (official defaults 0.88 / 0.95) or, with `thresholds: model`, the package's calibration, which
 * must then exist.
 */
export function resolveAmgThresholds(
  pkg: Pick<ModelPackage, 'dir' | 'name' | 'version' | 'amgCalibration'>,
  settings: ThresholdSettings,
): { predIouThresh: number; stabilityScoreThresh: number } {
  if (settings.thresholds === 'model') {
    if (!pkg.amgCalibration) {
      throw new ModelPackageError(
        `stage3.thresholds is "model", but the model package ${pkg.name} v${pkg.version} ` +
          `(${join(pkg.dir, 'model.json')}) has no amg_calibration; measure one with ` +
          '`npx tsx scripts/calibrate-amg.ts <model-dir> --write`, or set stage3.thresholds to "official"',
      );
    }
    const { predIouThresh, stabilityScoreThresh } = pkg.amgCalibration;
    return { predIouThresh, stabilityScoreThresh };
  }
  return {
    predIouThresh: settings.predIouThresh ?? DEFAULT_AMG_OPTIONS.predIouThresh,
    stabilityScoreThresh: settings.stabilityScoreThresh ?? DEFAULT_AMG_OPTIONS.stabilityScoreThresh,
  };
}

/** An ONNX model in memory with the external-data files it reads, as onnxruntime takes them. */
export interface OnnxInMemory {
  model: Uint8Array;
  externalData: { path: string; data: Uint8Array }[];
}

/**
 * The package's decoder as the tools that click run it (the browser tool, the simulated
 * annotators): the folded decoder when the package has one (the same masks for 0.57 of the
 * multiply-adds of a click; it takes no `orig_im_size`), else the official one cut to the outputs
 * they read (DECODER_OUTPUTS; lib/sam/onnx-prune.ts says why); with the weight files beside it.
 */
export async function readPromptDecoder(pkg: ModelPackage): Promise<OnnxInMemory> {
  const path = join(pkg.dir, (pkg.foldedDecoder ?? pkg.decoder).file);
  let model: Uint8Array;
  try {
    const bytes = await readFile(path);
    model = pkg.foldedDecoder ? bytes : pruneOnnxOutputs(bytes, DECODER_OUTPUTS);
  } catch (err) {
    throw new ModelPackageError(`${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const externalData = await Promise.all(
    externalDataLocations(model).map(async (location) => ({
      path: location,
      data: await readFile(join(dirname(path), location)),
    })),
  );
  return { model, externalData };
}
