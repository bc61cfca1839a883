// Stage 2's detector, for the run workflow (workflows/dataset-run.ts): before the first stage-2
// round the detector is trained on every mask the run has (stage 1's), and between stage-2 rounds
// it is retrained on every mask so far, each time on the embeddings of the SAM version that assists
// the next round (`<run>/detector-retrain-<n>`, workflows/retrain-detector.ts). A round is
// pre-filled by the registry's detector champion; a run that starts from `models.detector` seeds it.
//
// The rounds wait for each detector retrain: the paper's point is that the next round's pre-fill
// comes from a detector that has seen the last round's masks.
import { ChildWorkflowFailure, executeChild, isCancellation } from '@temporalio/workflow';
import type { DetectorGateSettings } from '../lib/models/gate.ts';
import { retrainDetector, type RetrainDetectorInput } from './retrain-detector.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from './search-attributes.ts';
import { versionRef, type ModelVersionRef } from './stage1-retraining.ts';
import { buildTrainingSet, ensureChampion } from './training-stubs.ts';

export interface DetectorTrainingSpec {
  registry: string;
  detectorName: string;
  /** A detector package to seed the registry with when it has no champion (models.detector). */
  seedUri: string | null;
  /** Retrain between stage-2 rounds (the first training, before round 1, always runs). */
  betweenRounds: boolean;
  holdoutFraction: number;
  maxEvalImages: number;
  gate: DetectorGateSettings;
  /** How to train; the data comes from the run. */
  train: Omit<RetrainDetectorInput['train'], 'storage' | 'trainingSet'>;
}

/** What a detector retrain did, for the run's result. */
export interface DetectorRetrainSummary {
  workflowId: string;
  trigger: string;
  trainingSet: string;
  /** The SAM version whose embeddings it read: "<name>/v<k>". */
  sam: string;
  result?: {
    version: number;
    promoted: boolean;
    reason: string;
    AP: number;
    AP50: number;
    AR100: number;
  };
  error?: string;
}

export class DetectorTraining {
  readonly retrains: DetectorRetrainSummary[] = [];

  private constructor(
    private readonly runId: string,
    private readonly outputUri: string,
    private readonly spec: DetectorTrainingSpec,
    /** The detector that pre-fills the next round; null until one is trained or seeded. */
    public champion: ModelVersionRef | null,
  ) {}

  /** The registry's detector champion (seeded from models.detector when given), or none yet. */
  static async start(
    runId: string,
    outputUri: string,
    spec: DetectorTrainingSpec,
  ): Promise<DetectorTraining> {
    const champion = await ensureChampion({
      registry: spec.registry,
      name: spec.detectorName,
      seedModelUri: spec.seedUri,
      runId,
    });
    return new DetectorTraining(runId, outputUri, spec, champion && versionRef(spec.detectorName, champion));
  }

  /** Whether a retrain is due before stage-2 round `k` (1-based) of the run. */
  dueBefore(stage2Round: number, roundsDone: readonly number[]): boolean {
    if (roundsDone.length === 0) return false; // nothing to learn from: the seeded detector or none
    return stage2Round === 1 || this.spec.betweenRounds;
  }

  /**
   * Trains on every mask of `roundsDone` over `sam`'s embeddings and waits; a promoted version
   * pre-fills the next round. A retrain that fails leaves the champion as it was.
   */
  async retrain(sam: { name: string; version: number }, roundsDone: number[], why: string): Promise<void> {
    const n = this.retrains.length + 1;
    const set = await buildTrainingSet({
      runId: this.runId,
      outputUri: this.outputUri,
      rounds: roundsDone,
      set: n,
      holdoutFraction: this.spec.holdoutFraction,
      kind: 'detector',
    });
    const samRef = `${sam.name}/v${sam.version}`;
    const summary: DetectorRetrainSummary = {
      workflowId: `${this.runId}/detector-retrain-${n}`,
      trigger: why,
      trainingSet: set.manifestKey,
      sam: samRef,
    };
    this.retrains.push(summary);
    if (set.trainMasks === 0 || set.holdoutMasks === 0) {
      summary.error =
        `not started: the training set has ${set.trainMasks} masks to train on and ` +
        `${set.holdoutMasks} held out to evaluate on; both must be non-zero`;
      return;
    }
    try {
      const result = await executeChild(retrainDetector, {
        workflowId: summary.workflowId,
        args: [
          {
            registry: this.spec.registry,
            detectorName: this.spec.detectorName,
            sam: samRef,
            train: { ...this.spec.train, storage: this.outputUri, trainingSet: set.manifestKey },
            evaluation: {
              storage: this.outputUri,
              dataset: set.manifestKey,
              maxImages: this.spec.maxEvalImages,
            },
            gate: this.spec.gate,
            trigger: why,
          },
        ],
        typedSearchAttributes: [
          { key: SAE_RUN, value: this.runId },
          { key: SAE_STAGE, value: 'stage2' },
          { key: SAE_MODEL, value: `${sam.name}@v${sam.version}` },
        ],
      });
      const { AP, AP50, AR100 } = result.metrics;
      summary.result = {
        version: result.version,
        promoted: result.promoted,
        reason: result.reason,
        AP,
        AP50,
        AR100,
      };
      if (result.promoted) this.champion = versionRef(this.spec.detectorName, result);
    } catch (err) {
      if (isCancellation(err)) throw err;
      summary.error = err instanceof ChildWorkflowFailure && err.cause ? err.cause.message : String(err);
    }
  }
}
