// The training activities, implemented in Python (trainer/sae_trainer/worker.py, PyTorch) and
// served on the `sae-gpu-training` task queue. Their inputs and results are the contract in
// lib/training/contract.ts, which both sides validate against; this file names the activities for
// the workflows' proxyActivities.
import type {
  EvaluateSamInput,
  EvaluateSamResult,
  TrainSamInput,
  TrainSamResult,
} from '../lib/training/contract.ts';

export type {
  EvaluateSamInput,
  EvaluateSamResult,
  ModelShape,
  TrainSamInput,
  TrainSamResult,
} from '../lib/training/contract.ts';

export interface TrainingActivities {
  trainSam(input: TrainSamInput): Promise<TrainSamResult>;
  evaluateSam(input: EvaluateSamInput): Promise<EvaluateSamResult>;
}
