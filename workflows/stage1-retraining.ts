// Retraining during stage 1, for the run workflow (workflows/dataset-run.ts): the rounds are
// assisted by the champion of the run's model in the registry; after each round the trigger
// (lib/models/trigger.ts) decides whether to retrain on every accepted mask so far, and a retrain
// (`<run>/retrain-<n>`, workflows/retrain.ts) runs beside the next rounds, one at a time. A round
// starts with the champion as it is then: a promotion reaches the next round (or, with
// waitForRetrain, the round waits for a due retrain to finish first).
import {
  ChildWorkflowFailure,
  isCancellation,
  startChild,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { GateSettings } from '../lib/models/gate.ts';
import { retrainDue, type RetrainPolicy } from '../lib/models/trigger.ts';
import { retrainSam, type RetrainInput, type RetrainResult } from './retrain.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from './search-attributes.ts';
import { buildTrainingSet, ensureChampion } from './training-stubs.ts';

export interface Stage1RetrainSpec {
  registry: string;
  modelName: string;
  policy: RetrainPolicy;
  waitForRetrain: boolean;
  holdoutFraction: number;
  maxEvalImages: number;
  gate: GateSettings;
  /** Calibrate each promoted version's AMG thresholds (absent: not calibrated). */
  calibration?: RetrainInput['calibration'];
  /** How to train; the data and the version come from the run. */
  train: Omit<RetrainInput['train'], 'storage' | 'trainingSet'>;
}

export interface ModelVersionRef {
  version: number;
  /** The version's folder URI: the rounds' modelUri. */
  uri: string;
  /** "<name>@v<k>", as SaeModel shows it. */
  tag: string;
}

/** What a retrain did, for the run's result: its version and the gate's word, or why it failed. */
export interface RetrainSummary {
  workflowId: string;
  trigger: string;
  trainingSet: string;
  result?: Pick<RetrainResult, 'version' | 'promoted' | 'reason' | 'amgCalibration'> & {
    miou1: number | null;
  };
  error?: string;
}

export class Stage1Retraining {
  readonly retrains: RetrainSummary[] = [];
  private running: Promise<void> | undefined;
  private masksAtLastRetrain = 0;
  private lastRetrainAt: number | null = null;

  private constructor(
    private readonly runId: string,
    private readonly outputUri: string,
    private readonly spec: Stage1RetrainSpec,
    /** The version that assists the next round. */
    public champion: ModelVersionRef,
  ) {}

  /** Finds (or seeds from the run's model package) the champion the first round starts with. */
  static async start(
    runId: string,
    outputUri: string,
    seedModelUri: string,
    spec: Stage1RetrainSpec,
  ): Promise<Stage1Retraining> {
    const champion = await ensureChampion({
      registry: spec.registry,
      name: spec.modelName,
      seedModelUri,
      runId,
    });
    // Given a seed, the registry always has a champion afterwards.
    return new Stage1Retraining(runId, outputUri, spec, versionRef(spec.modelName, champion!));
  }

  /** The champion for the next round, after waiting for a running retrain if the run says so. */
  async beforeRound(): Promise<ModelVersionRef> {
    if (this.spec.waitForRetrain && this.running) await this.running;
    return this.champion;
  }

  /** After a round closed with `masks` accepted masks in the run so far: retrain if it is due. */
  async afterRound(
    roundsDone: number[],
    masks: number,
    stage: 'stage1' | 'stage2' = 'stage1',
  ): Promise<void> {
    const decision = retrainDue(this.spec.policy, {
      masks,
      masksAtLastRetrain: this.masksAtLastRetrain,
      lastRetrainAt: this.lastRetrainAt,
      running: this.running !== undefined,
      now: Date.now(),
    });
    if (!decision.due) return;
    const n = this.retrains.length + 1;
    const set = await buildTrainingSet({
      runId: this.runId,
      outputUri: this.outputUri,
      rounds: roundsDone,
      set: n,
      holdoutFraction: this.spec.holdoutFraction,
    });
    const summary: RetrainSummary = {
      workflowId: `${this.runId}/retrain-${n}`,
      trigger: `stage ${stage.slice(-1)} after round ${roundsDone.at(-1)}: ${decision.reason}`,
      trainingSet: set.manifestKey,
    };
    this.retrains.push(summary);
    this.masksAtLastRetrain = masks;
    this.lastRetrainAt = Date.now();
    if (set.trainMasks === 0 || set.holdoutMasks === 0) {
      summary.error =
        `not started: the training set has ${set.trainMasks} masks to train on and ` +
        `${set.holdoutMasks} held out to evaluate on; both must be non-zero`;
      return;
    }
    const handle = await startChild(retrainSam, {
      workflowId: summary.workflowId,
      args: [
        {
          registry: this.spec.registry,
          modelName: this.spec.modelName,
          train: { ...this.spec.train, storage: this.outputUri, trainingSet: set.manifestKey },
          evaluation: {
            storage: this.outputUri,
            dataset: set.manifestKey,
            maxImages: this.spec.maxEvalImages,
          },
          gate: this.spec.gate,
          trigger: summary.trigger,
          ...(this.spec.calibration ? { calibration: this.spec.calibration } : {}),
        },
      ],
      typedSearchAttributes: [
        { key: SAE_RUN, value: this.runId },
        { key: SAE_STAGE, value: stage },
        { key: SAE_MODEL, value: this.champion.tag },
      ],
    });
    this.running = this.follow(handle, summary).finally(() => (this.running = undefined));
  }

  /** Waits for a retrain still running when the rounds are over. */
  async finish(): Promise<void> {
    if (this.running) await this.running;
  }

  private async follow(
    handle: ChildWorkflowHandle<typeof retrainSam>,
    summary: RetrainSummary,
  ): Promise<void> {
    try {
      const result = await handle.result();
      summary.result = {
        version: result.version,
        promoted: result.promoted,
        reason: result.reason,
        miou1: result.metrics.miou_1click ?? null,
        ...(result.amgCalibration !== undefined ? { amgCalibration: result.amgCalibration } : {}),
      };
      if (result.promoted) {
        this.champion = versionRef(this.spec.modelName, result);
      }
    } catch (err) {
      if (isCancellation(err)) throw err;
      // A failed retrain leaves the champion as it was; the rounds go on with it.
      summary.error = err instanceof ChildWorkflowFailure && err.cause ? err.cause.message : String(err);
    }
  }
}

export function versionRef(name: string, champion: { version: number; uri: string }): ModelVersionRef {
  return { version: champion.version, uri: champion.uri, tag: `${name}@v${champion.version}` };
}
