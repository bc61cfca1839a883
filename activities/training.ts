// Contract of the training activities. They are implemented in Python (trainer/sae_trainer/worker.py,
// PyTorch) and served on the `sae-gpu-training` task queue; this file only types them for the
// workflows. Keep the field names in step with the Python dataclasses.

export interface TrainSamInput {
  /** Folder with COCO instances `annotations.json` + images (e.g. written by `sa-engine synth`). */
  datasetUri: string;
  /** Model package to start from; null = a fresh model. */
  baseModelUri: string | null;
  /** Where the new model package goes, e.g. s3://bucket/models/sae-ref/v3/. */
  outputUri: string;
  /** 'decoder' fine-tunes the decoder on cached embeddings (the fast retraining path). */
  mode: 'full' | 'decoder';
  steps: number;
  seed: number;
  /** Name and version written into model.json. */
  name: string;
  version: string;
}

export interface TrainSamResult {
  modelUri: string;
  steps: number;
  finalLoss: number;
  seconds: number;
}

export interface EvaluateSamInput {
  modelUri: string;
  /** Held-out COCO set, never used in training. */
  datasetUri: string;
  maxImages: number;
}

export interface EvaluateSamResult {
  images: number;
  masks: number;
  /** Mean IoU after one click (best of the 3 masks by predicted IoU). */
  miouOneClick: number;
  /** Mean number of clicks to reach IoU 0.9 (at most 20). */
  nocAt90: number;
  /** Where the figures were written (metrics.json of the model package). */
  metricsUri: string;
}

export interface TrainingActivities {
  trainSam(input: TrainSamInput): Promise<TrainSamResult>;
  evaluateSam(input: EvaluateSamInput): Promise<EvaluateSamResult>;
}
