// Stage 2, semi-automatic annotation (paper §4), for the run workflow (workflows/dataset-run.ts):
//
//   for each stage-2 round:
//     train the detector on every mask so far (before round 1; between rounds if the run says so)
//     → the round (`<run>/stage2/round-<k>`): each image arrives with the masks SAM draws from the
//       detector's boxes, and people label only what is not yet there
//     → SAM's own retraining trigger, as in stage 1
//
// Rounds continue stage 1's numbering and take the run's next images. Without a detector (none
// seeded, none promoted yet) a round runs as a stage-1 round and says so in its result.
import type { PrefillSettings } from '../lib/stage2/prefill.ts';
import { roundTag } from '../lib/stage1/task-messages.ts';
import { executeContinuingChild } from './continuing-child.ts';
import { SAE_MODEL, SAE_ROUND, SAE_RUN, SAE_STAGE } from './search-attributes.ts';
import { annotationRound, roundWorkflowId, type RoundResult, type RoundSpec } from './stage1-round.ts';
import type { Stage1Retraining } from './stage1-retraining.ts';
import {
  DetectorTraining,
  type DetectorRetrainSummary,
  type DetectorTrainingSpec,
} from './stage2-detector.ts';
import { ensureChampion } from './training-stubs.ts';

export interface Stage2Input {
  rounds: number;
  imagesPerRound: number;
  /** The run's image offset of stage 2's first round: the images after stage 1's. */
  firstImage: number;
  /** The first stage-2 round's number: after stage 1's rounds. */
  firstRound: number;
  round: Omit<RoundSpec, 'runId' | 'outputUri' | 'round' | 'firstImage' | 'imageCount' | 'stage' | 'prefill'>;
  prefill: PrefillSettings;
  /** SAM's registry and name: the detector reads a registry version's embeddings. */
  sam: { registry: string; name: string };
  detector: DetectorTrainingSpec;
}

export interface Stage2Result {
  rounds: RoundResult[];
  detectorRetrains: DetectorRetrainSummary[];
}

export interface Stage2Context {
  runId: string;
  outputUri: string;
  /** The run's SAM package: seeds the registry when stage 1 did not. */
  modelUri: string;
  /** Every annotation round so far (stage 1's), which the detector trains on, and their masks. */
  roundsDone: number[];
  masksDone: number;
  /** Stage 1's SAM retraining, which goes on through stage 2; absent when the run has none. */
  retraining?: Stage1Retraining;
  /** Called with each round's workflow id as it starts (the run's progress query). */
  onRound: (workflowId: string) => void;
  /** The stage's result so far, filled in as rounds and detector trainings end (the run's progress query). */
  done?: Stage2Result;
}

export async function semiAutomaticStage(ctx: Stage2Context, input: Stage2Input): Promise<Stage2Result> {
  const { runId, outputUri } = ctx;
  const detectors = await DetectorTraining.start(runId, outputUri, input.detector);
  const roundsDone = [...ctx.roundsDone];
  const rounds: RoundResult[] = ctx.done?.rounds ?? [];
  if (ctx.done) ctx.done.detectorRetrains = detectors.retrains;
  for (let k = 1; k <= input.rounds; k++) {
    const round = input.firstRound + k - 1;
    const sam = await samForRound(ctx, input);
    if (detectors.dueBefore(k, roundsDone)) {
      const why =
        k === 1
          ? `stage 2 before its first round: the masks of rounds ${roundsDone.join(', ')}`
          : `stage 2 after round ${roundsDone.at(-1)}: the masks of rounds ${roundsDone.join(', ')}`;
      await detectors.retrain(sam, roundsDone, why);
    }
    const detector = detectors.champion;
    const spec: RoundSpec = {
      ...input.round,
      modelUri: sam.uri,
      runId,
      outputUri,
      round,
      stage: 'stage2',
      firstImage: input.firstImage + (k - 1) * input.imagesPerRound,
      imageCount: input.imagesPerRound,
      ...(detector ? { prefill: { detectorUri: detector.uri, settings: input.prefill } } : {}),
    };
    const workflowId = roundWorkflowId(runId, round, 'stage2');
    ctx.onRound(workflowId);
    const result = await executeContinuingChild(annotationRound, {
      workflowId,
      args: [spec],
      typedSearchAttributes: [
        { key: SAE_RUN, value: runId },
        { key: SAE_STAGE, value: 'stage2' },
        { key: SAE_ROUND, value: roundTag(runId, round) },
        { key: SAE_MODEL, value: detector ? `${sam.tag} + ${detector.tag}` : sam.tag },
      ],
    });
    rounds.push(detector ? result : { ...result, prefill: noDetector() });
    roundsDone.push(round);
    const masks = ctx.masksDone + rounds.reduce((n, r) => n + r.summary.masks, 0);
    await ctx.retraining?.afterRound(roundsDone, masks, 'stage2');
  }
  return { rounds, detectorRetrains: detectors.retrains };
}

/** The SAM version that assists the next round: stage 1's champion, or the run's model as a registry version. */
async function samForRound(
  ctx: Stage2Context,
  input: Stage2Input,
): Promise<{ name: string; version: number; uri: string; tag: string }> {
  const champion = await ctx.retraining?.beforeRound();
  if (champion) return { ...champion, name: input.sam.name };
  const seeded = await ensureChampion({ ...input.sam, seedModelUri: ctx.modelUri, runId: ctx.runId });
  // Seeded from the run's model, so its uri is a copy of the same package.
  const { version, uri } = seeded!;
  return { name: input.sam.name, version, uri, tag: `${input.sam.name}@v${version}` };
}

function noDetector(): RoundResult['prefill'] {
  return {
    images: 0,
    masks: 0,
    problem:
      'no detector: none was seeded and no detector training was promoted; the round ran as a stage-1 round',
  };
}
