// Activities of the fully automatic stage: thin adapters from Temporal (heartbeats, cancellation,
// retry classification) to lib/stage3/shard-plan.ts and lib/stage3/shard-runner.ts.
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import type { ImageSource } from '../lib/images/image-source.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import type { SegmenterFactory, SegmenterSettings } from '../lib/stage3/segmenter.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import {
  planShards as planShardManifests,
  type PlanCursor,
  type ShardPlan,
} from '../lib/stage3/shard-plan.ts';
import {
  runShard,
  ShardFailedError,
  ShardStalledError,
  type ShardCounts,
} from '../lib/stage3/shard-runner.ts';
import { probeShard as probeShardImages } from '../lib/stage3/shard-probe.ts';
import { DEFAULT_GENERATOR_SETTINGS } from '../lib/amg/generator.ts';
import { DEFAULT_MAX_PIXELS } from '../lib/images/image-io.ts';
import { innermostMessage } from '../lib/innermost-cause.ts';

export interface SegmentShardInput {
  runId: string;
  outputUri: string;
  shard: number;
  modelUri: string;
  /** Images with a smaller id are left to the annotation rounds (stage3.skipAnnotated); default 0. */
  firstImage?: number;
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
  /**
   * How long a shard may go without progress (an image fetched, started or finished, or the
   * segmenter's own progress) before it stops heartbeating; default DEFAULT_STALL_TIMEOUT_MS.
   */
  stallTimeoutMs?: number;
}

/**
 * No progress for this long means a hung GET or model call. Generous: one image is the unit of
 * progress until the segmenter reports finer steps, and a big image with crop layers on a 2-core
 * CPU can take many minutes.
 */
export const DEFAULT_STALL_TIMEOUT_MS = 30 * 60_000;

/** What a shard heartbeats: where a retry resumes, and the image in hand. */
export interface ShardHeartbeat {
  /** First manifest index not covered by a part file. */
  nextIndex: number;
  /** The image being worked on (manifest index), for a person reading the pending activity. */
  working?: number;
}

export function createStage3Activities(deps: Stage3Deps) {
  const stores = new StoreCache(deps.storeOptions);

  return {
    async planShards(
      spec: Pick<Stage3Spec, 'runId' | 'outputUri' | 'images' | 'shardSize'>,
    ): Promise<Stage3Plan> {
      const ctx = Context.current();
      return planShardManifests(stores.open(spec.outputUri), stores, {
        runId: spec.runId,
        source: spec.images,
        shardSize: spec.shardSize,
        // A retry goes on after the last shard manifest the failed attempt heartbeated.
        resume: ctx.info.heartbeatDetails as PlanCursor | undefined,
        onShard: (cursor) => ctx.heartbeat(cursor),
      });
    },

    /**
     * The result of a shard workflow that an earlier run of the stage started before it continued
     * as new: the stage's window stays full across that boundary (workflows/stage3.ts).
     */
    async awaitShard(input: { workflowId: string }): Promise<ShardResult> {
      const ctx = Context.current();
      const beat = setInterval(() => ctx.heartbeat(), 10_000);
      try {
        const result = ctx.client.workflow.getHandle(input.workflowId).result() as Promise<ShardResult>;
        return await Promise.race([result, cancelled(ctx.cancellationSignal)]);
      } catch (err) {
        if (err instanceof WorkflowFailedError)
          throw new ShardFailedError(input.workflowId, innermostMessage(err));
        throw err;
      } finally {
        clearInterval(beat);
      }
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
      const resumeFrom = (ctx.info.heartbeatDetails as ShardHeartbeat | undefined)?.nextIndex ?? 0;
      if (resumeFrom > 0 || ctx.info.attempt > 1)
        ctx.log.info('resuming shard', { shard: input.shard, resumeFrom, attempt: ctx.info.attempt });
      const segmenter = await deps.segmenterFor(input.modelUri, input.segmenter);
      // Heartbeat progress, not time. A timer beats every few seconds (one image can outlast the
      // heartbeat timeout), but only while work moves: after stallMs without progress the beats
      // stop, Temporal's heartbeat timeout fails the attempt and the retry goes elsewhere. Two
      // heartbeat timeouts later (so the server's timeout comes first) this attempt gives up too,
      // freeing the worker's slot; the runner pins the stall on the image in hand, so an image
      // that hangs every time ends up failed like one that crashes the worker.
      const heartbeatTimeoutMs = ctx.info.heartbeatTimeoutMs ?? 120_000;
      const stallMs = deps.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
      const beatEveryMs = Math.min(10_000, heartbeatTimeoutMs / 4);
      let beat: ShardHeartbeat = { nextIndex: resumeFrom };
      let lastProgress = Date.now();
      const stall = new AbortController();
      const keepAlive = setInterval(() => {
        const idle = Date.now() - lastProgress;
        if (idle < stallMs) ctx.heartbeat(beat);
        else if (idle >= stallMs + 2 * heartbeatTimeoutMs && !stall.signal.aborted) {
          const at = beat.working === undefined ? '' : ` at image ${beat.working} of the shard`;
          stall.abort(
            new ShardStalledError(
              `shard ${input.shard}: no progress for ${Math.round(idle / 1000)} s${at} ` +
                `(stall limit ${Math.round(stallMs / 1000)} s): a hung read or model call`,
            ),
          );
        }
      }, beatEveryMs);
      const progress = () => {
        lastProgress = Date.now();
      };
      try {
        const counts = await runShard(stores.open(input.outputUri), stores, {
          runId: input.runId,
          shard: input.shard,
          batchImages: input.batchImages,
          firstImage: input.firstImage,
          segmenter,
          resumeFrom,
          signal: AbortSignal.any([ctx.cancellationSignal, stall.signal]),
          watchForCrashes: ctx.info.attempt > 1,
          maxImageBytes: (input.segmenter as { maxImageBytes?: number }).maxImageBytes,
          settings: maskSettings(input),
          onProgress: progress,
          onImage: (working) => {
            beat = { ...beat, working };
            ctx.heartbeat(beat);
          },
          onBatchDone: (nextIndex) => {
            beat = { nextIndex };
            progress();
            ctx.heartbeat(beat);
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

function cancelled(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** What a shard's masks depend on: the model and the generator's settings (not batching or timeouts). */
export function maskSettings(input: SegmentShardInput): Record<string, unknown> {
  return { model: input.modelUri, segmenter: input.segmenter };
}
