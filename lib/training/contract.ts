// The contract of the training activities, in one place for both languages. They are implemented
// in Python (trainer/sae_trainer/worker.py) on the `sae-gpu-training` queue; the workflows call
// them from TypeScript. These schemas are the source: `npm run gen:contract` writes them as JSON
// Schema to trainer/sae_trainer/contract.schema.json, which the worker validates every input and
// output against (trainer/sae_trainer/contract.py), and the workflows parse each result with them.
// test/unit/training-contract.test.ts fails when the JSON file is stale.
//
// Field names are camelCase JSON except the evaluation figures, which keep the evaluator's names.
// Keys are relative to `storage`, a store root URI (s3://bucket/prefix or file:///dir).
import { z } from 'zod';

const key = z.string().min(1);
const positiveInt = z.number().int().positive();
const fraction = z.number().min(0).max(1);

export const ModelShapeSchema = z.strictObject({
  encoder: z.enum(['tiny', 'vit_b', 'vit_l', 'vit_h']).optional(),
  imageSize: positiveInt.optional(),
  transformerMlpDim: positiveInt.optional(),
  iouHeadHiddenDim: positiveInt.optional(),
  /** Spread of the prompt encoder's Fourier frequencies (official SAM: 1). */
  peScale: z.number().positive().optional(),
});

export const TrainSamInputSchema = z.strictObject({
  /** Store root URI of the training data. */
  storage: key,
  /** Key of the training-set manifest: {"annotations": key, "imagesPrefix"?, "holdout"?: {...}}. */
  trainingSet: key,
  /** Root URI of the model registry (lib/models/registry.ts). */
  registry: key,
  modelName: key,
  /** Writes <registry>/<modelName>/v<version>/, a version the caller has claimed. */
  version: positiveInt,
  /** Key prefix in the registry of the version to start from (holds checkpoint.pt): "<name>/v<k>". */
  parent: key.optional(),
  /** Without a parent: key of an official SAM .pth and its ViT. Neither: a fresh model. */
  officialCheckpoint: key.optional(),
  encoder: z.enum(['vit_b', 'vit_l', 'vit_h']).optional(),
  /** 'decoder' fine-tunes the decoder on cached embeddings (the fast retraining path). */
  mode: z.enum(['full', 'decoder']),
  steps: positiveInt,
  batchSize: positiveInt.optional(),
  masksPerImage: positiveInt.optional(),
  /** Corrective clicks per mask after the first prompt (the paper: 8). */
  numPoints: z.number().int().nonnegative().optional(),
  /** Train on square windows of this side (a multiple of 16) that hold the sampled masks whole. */
  cropSize: positiveInt.optional(),
  /** Windows this many times the longer side of the mask they are built around (cropSize: the smallest). */
  cropContext: z.number().positive().optional(),
  /** Share of first prompts that are boxes (the paper: 0.5). */
  boxProbability: fraction.optional(),
  /** First points from the part of the mask at least this share of its deepest depth (the paper: 0). */
  pointDepth: fraction.optional(),
  lr: z.number().positive().optional(),
  seed: z.number().int().nonnegative().optional(),
  /** Steps between resumable checkpoints uploaded to the version's train/ folder. */
  checkpointEvery: positiveInt.optional(),
  model: ModelShapeSchema.optional(),
});

export const ModelFileSchema = z.strictObject({
  name: key,
  bytes: z.number().int().nonnegative(),
  sha256: key,
});

export const TrainSamResultSchema = z.strictObject({
  /** Key prefix of the new model version in the registry. */
  model: key,
  modelJson: key,
  /** The training-set manifest as a URI, and the SHA-256 of its bytes as trained on. */
  trainingSetUri: key,
  trainingSetSha256: key,
  steps: z.number().int().nonnegative(),
  finalLoss: z.number().nullable(),
  seconds: z.number().nonnegative(),
  /** Largest |ONNX − PyTorch| per output on the export check. */
  parity: z.record(z.string(), z.number()),
  /** The package files written under `model`, for the registry's lineage. */
  files: z.array(ModelFileSchema),
});

export const EvaluateSamInputSchema = z.strictObject({
  /** Store root URI of the evaluation data. */
  storage: key,
  /** Root URI of the model registry, and the version's key prefix in it ("<name>/v<k>"). */
  registry: key,
  model: key,
  /** Manifest key; its holdout split is used when it has one. */
  dataset: key,
  maxImages: positiveInt.optional(),
  maxMasksPerImage: positiveInt.optional(),
  maxClicks: positiveInt.optional(),
});

const SizeFiguresSchema = z.strictObject({
  masks: z.number().int().nonnegative(),
  miou_1click: z.number(),
  noc90: z.number(),
});

/** evaluate.py iou_head_figures(): the 3 first-click masks' predicted IoU against their true IoU. */
const IouHeadFiguresSchema = z.strictObject({
  pairs: z.number().int().nonnegative(),
  /** Pearson correlation; null when either side does not vary. */
  pearson: z.number().nullable(),
  mean_abs_error: z.number(),
  /** Per tenth of predicted IoU (empty tenths left out): the mean predicted and true IoU in it. */
  bins: z.array(
    z.strictObject({
      from: z.number(),
      to: z.number(),
      count: z.number().int().positive(),
      predicted: z.number(),
      true: z.number(),
    }),
  ),
});

/** trainer/sae_trainer/evaluate.py summarize(); only images and masks when there was nothing to measure. */
export const EvaluateSamResultSchema = z.strictObject({
  images: z.number().int().nonnegative(),
  masks: z.number().int().nonnegative(),
  /** Mean IoU after one click (best of the 3 masks by predicted IoU). */
  miou_1click: z.number().optional(),
  noc85: z.number().optional(),
  /** Mean clicks to reach IoU 0.9 (at most max_clicks). */
  noc90: z.number().optional(),
  max_clicks: positiveInt.optional(),
  protocol: z.string().optional(),
  /** Mean IoU after k clicks, by k. */
  miou_at_clicks: z.record(z.string(), z.number()).optional(),
  /** The best of the 3 first-click masks by true IoU. */
  miou_1click_oracle: z.number().optional(),
  /** Reference figures: a disk of each mask's true area at its click (no model), and the model on a grey image. */
  miou_1click_disk: z.number().optional(),
  miou_1click_blank: z.number().optional(),
  /** COCO size classes (small, medium, large). */
  by_size: z.record(z.string(), SizeFiguresSchema).optional(),
  /** How well the IoU head's predictions track the true IoU (the AMG filters on them). */
  iou_head: IouHeadFiguresSchema.optional(),
  /** The manifest key evaluated. */
  dataset: key.optional(),
});

/** How detector maps become boxes (lib/detector/decode.ts); stored in the package's model.json. */
export const DetectorDecodeSchema = z.strictObject({
  scoreThreshold: fraction.optional(),
  nmsIou: fraction.optional(),
  maxDetections: positiveInt.optional(),
});

export const TrainDetectorInputSchema = z.strictObject({
  storage: key,
  /** A training-set manifest as for trainSam: the boxes of its masks are the targets. */
  trainingSet: key,
  registry: key,
  /** The detector's name in the registry, and the version claimed for it. */
  modelName: key,
  version: positiveInt,
  /** The SAM version whose (frozen) encoder's embeddings the detector reads: "<name>/v<k>". */
  sam: key,
  /** A detector version to continue from: "<name>/v<k>" (it must read the same encoder). */
  parent: key.optional(),
  steps: positiveInt,
  batchSize: positiveInt.optional(),
  lr: z.number().positive().optional(),
  seed: z.number().int().nonnegative().optional(),
  checkpointEvery: positiveInt.optional(),
  /** Head width and one dilated 3×3 conv per entry (trainer/sae_trainer/detector.py). */
  width: positiveInt.optional(),
  dilations: z.array(positiveInt).min(1).optional(),
  decode: DetectorDecodeSchema.optional(),
});

export const TrainDetectorResultSchema = z.strictObject({
  model: key,
  modelJson: key,
  trainingSetUri: key,
  trainingSetSha256: key,
  steps: z.number().int().nonnegative(),
  finalLoss: z.number().nullable(),
  seconds: z.number().nonnegative(),
  /** Largest |ONNX − PyTorch| per output (scores, boxes). */
  parity: z.record(z.string(), z.number()),
  files: z.array(ModelFileSchema),
});

export const EvaluateDetectorInputSchema = z.strictObject({
  storage: key,
  registry: key,
  /** The detector version ("<name>/v<k>") and the SAM version whose embeddings it reads. */
  model: key,
  sam: key,
  /** Manifest key; its holdout split is used when it has one. */
  dataset: key,
  maxImages: positiveInt.optional(),
  decode: DetectorDecodeSchema.optional(),
});

/** pycocotools COCOeval on boxes with useCats = 0 (trainer/sae_trainer/detector_train.py). */
export const EvaluateDetectorResultSchema = z.strictObject({
  images: z.number().int().nonnegative(),
  /** Ground-truth boxes (one per mask) and the detections made. */
  boxes: z.number().int().nonnegative(),
  detections: z.number().int().nonnegative(),
  AP: z.number(),
  AP50: z.number(),
  AP75: z.number(),
  AP_small: z.number(),
  AP_medium: z.number(),
  AP_large: z.number(),
  AR1: z.number(),
  AR10: z.number(),
  AR100: z.number(),
  settings: z.strictObject({ score_threshold: z.number(), nms_iou: z.number(), max_detections: z.number() }),
  protocol: z.string(),
  dataset: key.optional(),
});

export type ModelShape = z.infer<typeof ModelShapeSchema>;
export type TrainSamInput = z.infer<typeof TrainSamInputSchema>;
export type TrainSamResult = z.infer<typeof TrainSamResultSchema>;
export type EvaluateSamInput = z.infer<typeof EvaluateSamInputSchema>;
export type EvaluateSamResult = z.infer<typeof EvaluateSamResultSchema>;
export type TrainDetectorInput = z.infer<typeof TrainDetectorInputSchema>;
export type TrainDetectorResult = z.infer<typeof TrainDetectorResultSchema>;
export type EvaluateDetectorInput = z.infer<typeof EvaluateDetectorInputSchema>;
export type EvaluateDetectorResult = z.infer<typeof EvaluateDetectorResultSchema>;

/** Every schema of the contract by the name the JSON file and the Python side use. */
export const TRAINING_CONTRACT = {
  TrainSamInput: TrainSamInputSchema,
  TrainSamResult: TrainSamResultSchema,
  EvaluateSamInput: EvaluateSamInputSchema,
  EvaluateSamResult: EvaluateSamResultSchema,
  TrainDetectorInput: TrainDetectorInputSchema,
  TrainDetectorResult: TrainDetectorResultSchema,
  EvaluateDetectorInput: EvaluateDetectorInputSchema,
  EvaluateDetectorResult: EvaluateDetectorResultSchema,
} as const;

/** The contract as one JSON Schema document with a definition per activity input and result. */
export function trainingContractJsonSchema(): Record<string, unknown> {
  const defs = Object.fromEntries(
    Object.entries(TRAINING_CONTRACT).map(([name, schema]) => {
      const { $schema: _, ...json } = z.toJSONSchema(schema, { io: 'input' }) as Record<string, unknown>;
      return [name, json];
    }),
  );
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $comment: 'Generated from lib/training/contract.ts by `npm run gen:contract`; do not edit.',
    $defs: defs,
  };
}
