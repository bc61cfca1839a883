// Turns a validated run config into the input of the datasetRun workflow: keys, URIs and small
// settings only (Temporal payloads stay small; the full config goes to runs/<run>/run.json).
import type { DatasetRunInput } from '../workflows/dataset-run.ts';
import type { Stage1RetrainSpec } from '../workflows/stage1-retraining.ts';
import type { Stage2Input } from '../workflows/stage2.ts';
import { registryUri } from './models/registry.ts';
import { durationToMs, type RunConfig } from './run-config.ts';

/** Shards per workflow run before continue-as-new: ~8 history events a shard keeps this far below 10k. */
export const SHARDS_PER_WORKFLOW_RUN = 500;

/** A round publishes this many tasks per workflow run before continuing as new (~5 events each). */
export const TASKS_PER_WORKFLOW_RUN = 1000;
/** How often an open round counts its masks and tasks. */
export const ROUND_POLL_SECONDS = 15;

export function datasetRunInput(config: RunConfig): DatasetRunInput {
  const { stage1, stage3 } = config;
  const {
    shardSize,
    maxConcurrentShards,
    batchImages,
    heartbeatTimeout,
    enabled,
    skipAnnotated,
    ...segmenter
  } = stage3;
  return {
    runId: config.run,
    outputUri: config.output,
    modelUri: config.models.sam,
    config,
    configSummary: configSummary(config),
    stage1: stage1.enabled
      ? {
          rounds: stage1.rounds,
          imagesPerRound: stage1.imagesPerRound,
          round: { ...roundSettings(config), targetMasks: stage1.targetMasksPerRound },
          retrain: stage1.retrain.enabled ? retrainSpec(config) : undefined,
        }
      : undefined,
    stage2: config.stage2.enabled ? stage2Input(config) : undefined,
    stage3: enabled
      ? {
          images: config.images,
          shardSize,
          maxConcurrentShards,
          shardsPerWorkflowRun: SHARDS_PER_WORKFLOW_RUN,
          shardTemplate: {
            modelUri: config.models.sam,
            ...(skipAnnotated ? { firstImage: annotatedImages(config) } : {}),
            batchImages,
            heartbeatTimeoutSeconds: durationToMs(heartbeatTimeout) / 1000,
            segmenter,
          },
        }
      : undefined,
    release: config.release.enabled ? { shortestSide: config.release.shortestSide } : undefined,
    audit: config.audit.enabled ? config.audit : undefined,
  };
}

/** How many of the run's first images the annotation rounds take (stage 1's, then stage 2's). */
export function annotatedImages(config: RunConfig): number {
  const { stage1, stage2 } = config;
  return (
    (stage1.enabled ? stage1.rounds * stage1.imagesPerRound : 0) +
    (stage2.enabled ? stage2.rounds * stage2.imagesPerRound : 0)
  );
}

/** An annotation round's settings, stage 1's and stage 2's alike (stage 2 shares stage 1's section). */
function roundSettings(config: RunConfig) {
  const { stage1 } = config;
  return {
    modelUri: config.models.sam,
    // Rounds take their images from the run's plan, cut as stage 3 cuts it.
    plan: { images: config.images, shardSize: config.stage3.shardSize },
    embeddingDtype: stage1.embeddingDtype,
    embedBatch: stage1.embedBatch,
    embedWindow: stage1.embedWindow,
    leaseSeconds: durationToMs(stage1.lease) / 1000,
    deadlineSeconds: durationToMs(stage1.roundDeadline) / 1000,
    pollSeconds: ROUND_POLL_SECONDS,
    tasksPerWorkflowRun: TASKS_PER_WORKFLOW_RUN,
  };
}

function stage2Input(config: RunConfig): Stage2Input {
  const { stage1, stage2 } = config;
  const stage1Rounds = stage1.enabled ? stage1.rounds : 0;
  const { detector, prefill, retrain } = stage2;
  const decode = {
    ...(detector.scoreThreshold !== null ? { scoreThreshold: detector.scoreThreshold } : {}),
    ...(detector.nmsIou !== null ? { nmsIou: detector.nmsIou } : {}),
    ...(detector.maxDetections !== null ? { maxDetections: detector.maxDetections } : {}),
  };
  return {
    rounds: stage2.rounds,
    imagesPerRound: stage2.imagesPerRound,
    firstImage: stage1Rounds * stage1.imagesPerRound,
    firstRound: stage1Rounds + 1,
    round: { ...roundSettings(config), targetMasks: stage2.targetMasksPerRound },
    prefill: { ...prefill, detect: decode },
    sam: { registry: registryUri(config), name: stage1.retrain.model },
    detector: {
      registry: registryUri(config),
      detectorName: detector.model,
      seedUri: config.models.detector,
      betweenRounds: retrain.betweenRounds,
      holdoutFraction: retrain.holdoutFraction,
      maxEvalImages: retrain.maxEvalImages,
      gate: { minGain: retrain.minGain },
      // A version keeps this decoding in its package: its figures and its pre-fill both use it.
      train: { steps: retrain.steps, batchSize: retrain.batchSize, lr: retrain.lr, decode },
    },
  };
}

function retrainSpec(config: RunConfig): Stage1RetrainSpec {
  const r = config.stage1.retrain;
  return {
    registry: registryUri(config),
    modelName: r.model,
    policy: {
      minNewMasks: r.minNewMasks,
      minGrowth: r.minGrowth,
      minIntervalMs: r.minInterval === null ? null : durationToMs(r.minInterval),
    },
    waitForRetrain: r.waitForRetrain,
    holdoutFraction: r.holdoutFraction,
    maxEvalImages: r.maxEvalImages,
    gate: { minGain: r.minGain, maxNoc90Loss: r.maxNoc90Loss },
    ...(r.calibration.enabled
      ? {
          calibration: {
            maxImages: r.calibration.maxImages,
            pointsPerSide: r.calibration.pointsPerSide ?? config.stage3.pointsPerSide,
          },
        }
      : {}),
    train: {
      mode: r.mode,
      steps: r.steps,
      batchSize: r.batchSize,
      masksPerImage: r.masksPerImage,
      numPoints: r.numPoints,
      lr: r.lr,
      boxProbability: r.boxProbability,
      ...(r.cropSize !== null ? { cropSize: r.cropSize } : {}),
      ...(r.cropContext !== null ? { cropContext: r.cropContext } : {}),
    },
  };
}

/** What the Temporal UI shows in the run's memo. */
export function configSummary(config: RunConfig): Record<string, string | number | boolean> {
  const images = 'prefix' in config.images ? config.images.prefix : config.images.manifest;
  return {
    images,
    output: config.output,
    model: config.models.sam,
    stages: (['stage1', 'stage2', 'stage3', 'audit', 'release'] as const)
      .filter((s) => config[s].enabled)
      .join(','),
    pointsPerSide: config.stage3.pointsPerSide,
    cropNLayers: config.stage3.cropNLayers,
    // With thresholds "model" the two come from the model package's calibration, read by the
    // inference worker (lib/stage3/segmenter.ts); the memo says where they come from.
    thresholds: config.stage3.thresholds,
    ...(config.stage3.predIouThresh === null ? {} : { predIouThresh: config.stage3.predIouThresh }),
    ...(config.stage3.stabilityScoreThresh === null
      ? {}
      : { stabilityScoreThresh: config.stage3.stabilityScoreThresh }),
    shardSize: config.stage3.shardSize,
  };
}
