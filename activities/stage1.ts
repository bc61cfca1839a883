// Stage 1's activities: thin adapters over lib/stage1 (round-tasks.ts: the visibility queries). Encoding and
// exporting run on the inference pool; the rest on the orchestration pool.
import { Context } from '@temporalio/activity';
import { closeRoundTasks, countRoundTasks, type RoundTaskCounts } from '../lib/stage1/round-tasks.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { EmbeddingDtype } from '../lib/sam/embedding-file.ts';
import type { SamSessionFactory } from '../lib/sam/local-model.ts';
import type { SessionSettings } from '../lib/sam/session.ts';
import {
  storeAnnotation,
  storeFlag,
  type AnnotationRecord,
  type FlagRecord,
} from '../lib/stage1/annotations.ts';
import { embedImages, type EmbedImage, type EmbedImagesResult } from '../lib/stage1/embeddings.ts';
import { exportRound, type AnnotationStage, type RoundExport } from '../lib/stage1/round-export.ts';
import { buildTrainingSet, type TrainingSetSummary } from '../lib/stage1/training-set.ts';
import { readShardEntries, type ShardEntry } from '../lib/stage3/shard-plan.ts';
import { runLayout, type TrainingSetKind } from '../lib/run-layout.ts';

export interface RoundRef {
  runId: string;
  outputUri: string;
  round: number;
  /** Which stage's round (default stage1): its summary says so. */
  stage?: AnnotationStage;
}

export interface RoundProgress extends RoundTaskCounts {
  /** Accepted masks in storage. */
  masks: number;
}

export interface EmbedImagesInput {
  runId: string;
  outputUri: string;
  modelUri: string;
  /** A batch of a round's images: one activity each, heartbeating per image. */
  images: EmbedImage[];
  dtype: EmbeddingDtype;
  maxPixels?: number;
  maxBytes?: number;
  onnx?: SessionSettings;
}

export interface Stage1Deps {
  storeOptions?: ObjectStoreOptions;
  sessionFor: SamSessionFactory;
}

export function createStage1Activities(deps: Stage1Deps) {
  const stores = new StoreCache(deps.storeOptions ?? {});
  return {
    /**
     * Images `first` .. `first + count - 1` of the run's plan (stage 3's shard manifests), so that
     * an image has the same id in every stage.
     */
    async roundImages(input: {
      runId: string;
      outputUri: string;
      shardSize: number;
      first: number;
      count: number;
    }): Promise<ShardEntry[]> {
      const out = stores.open(input.outputUri);
      const images: ShardEntry[] = [];
      const end = input.first + input.count;
      for (let shard = Math.floor(input.first / input.shardSize); images.length < input.count; shard++) {
        if (!(await out.exists(runLayout.shardInput(input.runId, shard)))) break; // past the last image
        const entries = await readShardEntries(out, input.runId, shard);
        images.push(...entries.filter((e) => e.id >= input.first && e.id < end));
        if (entries.length < input.shardSize) break;
      }
      return images;
    },

    /** Accepted masks in storage and the round's tasks as visibility counts them. */
    async roundProgress(input: RoundRef): Promise<RoundProgress> {
      const out = stores.open(input.outputUri);
      let masks = 0;
      for await (const page of out.list(runLayout.stage1AnnotationsPrefix(input.runId, input.round))) {
        masks += page.length;
      }
      return { masks, ...(await countRoundTasks(Context.current().client, input.runId, input.round)) };
    },

    /** Asks every open task of the round to close; they complete once their masks are stored. */
    async closeRoundTasks(input: RoundRef): Promise<number> {
      const ctx = Context.current();
      return closeRoundTasks(ctx.client, input.runId, input.round, () => ctx.heartbeat());
    },

    /** A retrain's training set from the rounds' exports, with the run's evaluation set held out. */
    async buildTrainingSet(input: {
      runId: string;
      outputUri: string;
      rounds: number[];
      set: number;
      holdoutFraction: number;
      /** Whose set (default SAM's): stage 2's detector numbers its sets apart. */
      kind?: TrainingSetKind;
    }): Promise<TrainingSetSummary> {
      const { runId, rounds, set, holdoutFraction, kind } = input;
      return buildTrainingSet(stores.open(input.outputUri), runId, rounds, set, holdoutFraction, kind);
    },

    /** The round's summary, COCO export and training-set manifest (lib/stage1/round-export.ts). */
    async exportRound(input: RoundRef): Promise<RoundExport> {
      const ctx = Context.current();
      return exportRound(
        stores.open(input.outputUri),
        stores,
        input.runId,
        input.round,
        (done) => ctx.heartbeat({ done }),
        input.stage,
      );
    },

    /** Stores an accepted annotation once; the task workflow calls it before its submit returns. */
    async storeAnnotation(input: {
      outputUri: string;
      record: AnnotationRecord;
    }): Promise<{ stored: boolean }> {
      return storeAnnotation(stores.open(input.outputUri), input.record);
    },

    /** Stores an annotator's flag on an image; the task workflow calls it before the flag returns. */
    async storeFlag(input: { outputUri: string; flag: FlagRecord }): Promise<void> {
      await storeFlag(stores.open(input.outputUri), input.flag);
    },

    /** Writes each image's embedding once (a retry reuses what the last attempt stored). */
    async embedImages(input: EmbedImagesInput): Promise<EmbedImagesResult> {
      const ctx = Context.current();
      const session = await deps.sessionFor(input.modelUri, input.onnx);
      return embedImages(stores.open(input.outputUri), stores, session, {
        runId: input.runId,
        images: input.images,
        dtype: input.dtype,
        maxPixels: input.maxPixels,
        maxBytes: input.maxBytes,
        onProgress: (done) => ctx.heartbeat({ done, images: input.images.length }),
      });
    },
  };
}

export type Stage1Activities = ReturnType<typeof createStage1Activities>;
