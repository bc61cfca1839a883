// Activities of the fully automatic stage: thin adapters from Temporal (heartbeats, cancellation,
// retry classification) to lib/shard-plan.ts and lib/shard-runner.ts.
import { Context } from '@temporalio/activity';
import type { ImageSource } from '../lib/image-source.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import type { SegmenterFactory, SegmenterSettings } from '../lib/segmenter.ts';
import { StoreCache } from '../lib/object-uri.ts';
import { planShards as planShardManifests, type ShardPlan } from '../lib/shard-plan.ts';
import { runShard, type ShardCounts } from '../lib/shard-runner.ts';
import { probeShard as probeShardImages } from '../lib/shard-probe.ts';
import { DEFAULT_GENERATOR_SETTINGS } from '../lib/automatic-mask-generator.ts';
import { DEFAULT_MAX_PIXELS } from '../lib/image-io.ts';

export interface SegmentShardInput {
  runId: string;
  outputUri: string;
  shard: number;
  modelUri: string;
  batchImages: number;
  /** Heartbeat timeout of the shard activity (run config stage3.heartbeatTimeout); default 120. */
  heartbeatTimeoutSeconds?: number;
  segmenter: SegmenterSettings;
  /** Read image headers only and estimate the work (`sa-engine run --dry-run`). */
  dryRun?: boolean;
}

export interface Stage3Spec {
  runId: string;
  outputUri: string;
  images: ImageSource;
  shardSize: number;
  maxConcurrentShards: number;
  /** Shards per workflow run before continue-as-new keeps the history short. */
  shardsPerWorkflowRun: number;
  shardTemplate: Omit<SegmentShardInput, 'runId' | 'outputUri' | 'shard'>;
  /** Prefix of the child workflow ids; the run id, or `<run>/dry-run` for a dry run. */
  workflowIdBase?: string;
}

export type Stage3Plan = ShardPlan;

export interface ShardResult extends ShardCounts {
  shard: number;
  /** Dry runs only: what a real run would do with the readable images. */
  work?: WorkEstimate;
}

export interface WorkEstimate {
  megapixels: number;
  encoderRuns: number;
  prompts: number;
}

export interface Stage3Deps {
  storeOptions?: ObjectStoreOptions;
  /** One segmenter per model and settings, created lazily and kept for the worker's life. */
  segmenterFor: SegmenterFactory;
}

export function createStage3Activities(deps: Stage3Deps) {
  const stores = new StoreCache(deps.storeOptions);

  return {
    async planShards(spec: Stage3Spec): Promise<Stage3Plan> {
      const out = stores.open(spec.outputUri);
      return planShardManifests(out, stores, {
        runId: spec.runId,
        source: spec.images,
        shardSize: spec.shardSize,
        onShard: (plan) => Context.current().heartbeat(plan),
      });
    },

    async probeShard(input: SegmentShardInput): Promise<ShardResult> {
      const ctx = Context.current();
      const s = { ...DEFAULT_GENERATOR_SETTINGS, maxImagePixels: DEFAULT_MAX_PIXELS, ...input.segmenter };
      const counts = await probeShardImages(stores.open(input.outputUri), stores, {
        runId: input.runId,
        shard: input.shard,
        settings: s,
        onImage: (done) => ctx.heartbeat({ done }),
      });
      const { readable, unreadable, megapixels, encoderRuns, prompts } = counts;
      return {
        shard: input.shard,
        images: counts.images,
        done: readable,
        failed: unreadable,
        masks: 0,
        work: { megapixels, encoderRuns, prompts },
      };
    },

    async segmentShard(input: SegmentShardInput): Promise<ShardResult> {
      const ctx = Context.current();
      const resumeFrom = (ctx.info.heartbeatDetails as { nextIndex?: number } | undefined)?.nextIndex ?? 0;
      if (resumeFrom > 0)
        ctx.log.info('resuming shard', { shard: input.shard, resumeFrom, attempt: ctx.info.attempt });
      const segmenter = await deps.segmenterFor(input.modelUri, input.segmenter);
      // Heartbeat while images are being worked on too, not just between batches: one big image
      // on a CPU can outlast the heartbeat timeout. Several beats fit in one timeout, however short.
      let lastBeat = { nextIndex: resumeFrom };
      const beatEveryMs = Math.min(10_000, (ctx.info.heartbeatTimeoutMs ?? 120_000) / 4);
      const keepAlive = setInterval(() => ctx.heartbeat(lastBeat), beatEveryMs);
      try {
        const counts = await runShard(stores.open(input.outputUri), stores, {
          runId: input.runId,
          shard: input.shard,
          batchImages: input.batchImages,
          segmenter,
          resumeFrom,
          signal: ctx.cancellationSignal,
          onBatchDone: (nextIndex) => {
            lastBeat = { nextIndex };
            ctx.heartbeat(lastBeat);
          },
        });
        return { ...counts, shard: input.shard };
      } finally {
        clearInterval(keepAlive);
      }
    },
  };
}

export type Stage3Activities = ReturnType<typeof createStage3Activities>;
