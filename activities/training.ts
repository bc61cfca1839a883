// The training activities, implemented in Python (trainer/sae_trainer/worker.py, PyTorch) and
// served on the `sae-gpu-training` task queue. Their inputs and results are the contract in
// lib/training/contract.ts, which both sides validate against; this file names the activities for
// the workflows' proxyActivities.
import type {
  EvaluateDetectorInput,
  EvaluateDetectorResult,
  EvaluateSamInput,
  EvaluateSamResult,
  TrainDetectorInput,
  TrainDetectorResult,
  TrainSamInput,
  TrainSamResult,
} from '../lib/training/contract.ts';

export type {
  EvaluateDetectorInput,
  EvaluateDetectorResult,
  EvaluateSamInput,
  EvaluateSamResult,
  ModelShape,
  TrainDetectorInput,
  TrainDetectorResult,
  TrainSamInput,
  TrainSamResult,
} from '../lib/training/contract.ts';

export interface TrainingActivities {
  trainSam(input: TrainSamInput): Promise<TrainSamResult>;
  evaluateSam(input: EvaluateSamInput): Promise<EvaluateSamResult>;
  /** Stage 2's box detector, on a SAM version's embeddings (trainer/sae_trainer/detector_train.py). */
  trainDetector(input: TrainDetectorInput): Promise<TrainDetectorResult>;
  evaluateDetector(input: EvaluateDetectorInput): Promise<EvaluateDetectorResult>;
}
