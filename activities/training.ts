// Contract of the training activities. They are implemented in Python (trainer/sae_trainer/worker.py,
// PyTorch) and served on the `sae-gpu-training` task queue; this file only types them for the
// workflows. Field names are the worker's (camelCase JSON); keys are relative to `storage`.

export interface ModelShape {
  encoder?: 'tiny' | 'vit_b' | 'vit_l' | 'vit_h';
  imageSize?: number;
  transformerMlpDim?: number;
  iouHeadHiddenDim?: number;
  /** Spread of the prompt encoder's Fourier frequencies (official SAM: 1). */
  peScale?: number;
}

export interface TrainSamInput {
  /** Store root URI: s3://bucket/prefix or file:///dir. */
  storage: string;
  /** Key of the training-set manifest: {"annotations": key, "imagesPrefix"?, "holdout"?: {...}}. */
  trainingSet: string;
  modelName: string;
  /** Writes models/<modelName>/v<version>/. */
  version: number;
  /** Key prefix of the model version to start from (holds checkpoint.pt); absent = a fresh model. */
  parent?: string;
  /** 'decoder' fine-tunes the decoder on cached embeddings (the fast retraining path). */
  mode: 'full' | 'decoder';
  steps: number;
  batchSize?: number;
  masksPerImage?: number;
  numPoints?: number;
  /** Train on square windows of this side (a multiple of 16) that hold the sampled masks whole. */
  cropSize?: number;
  /** Windows this many times the longer side of the mask they are built around (cropSize: the smallest). */
  cropContext?: number;
  /** Share of first prompts that are boxes (the paper: 0.5). */
  boxProbability?: number;
  /** First points from the part of the mask at least this share of its deepest depth (the paper: 0). */
  pointDepth?: number;
  lr?: number;
  seed?: number;
  model?: ModelShape;
}

export interface TrainSamResult {
  /** Key prefix of the new model version. */
  model: string;
  modelJson: string;
  steps: number;
  finalLoss: number | null;
  seconds: number;
  parity: Record<string, number>;
}

export interface EvaluateSamInput {
  storage: string;
  /** Key prefix of the model version. */
  model: string;
  /** Manifest key; its holdout split is used when it has one. */
  dataset: string;
  maxImages?: number;
  maxMasksPerImage?: number;
  maxClicks?: number;
}

export interface EvaluateSamResult {
  images: number;
  masks: number;
  /** Mean IoU after one click (best of the 3 masks by predicted IoU). */
  miou_1click?: number;
  noc85?: number;
  /** Mean clicks to reach IoU 0.9 (at most maxClicks). */
  noc90?: number;
  max_clicks?: number;
  /** Reference figures: a disk of each mask's true area at its click (no model), and the model on a grey image. */
  miou_1click_disk?: number;
  miou_1click_blank?: number;
}

export interface TrainingActivities {
  trainSam(input: TrainSamInput): Promise<TrainSamResult>;
  evaluateSam(input: EvaluateSamInput): Promise<EvaluateSamResult>;
}
