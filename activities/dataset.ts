// Activities around a whole run: its record in storage (run.json) and the dataset manifest,
// statistics and release copies (lib/dataset/build.ts), built one stage-3 shard at a time by the
// dataset-build workflow.
import { Context } from '@temporalio/activity';
import {
  buildDataset as buildDatasetFiles,
  buildDatasetShard as buildDatasetShardFiles,
  finishDataset as finishDatasetFiles,
  requireStage3Plan,
  type DatasetShardResult,
  type DatasetSummary,
} from '../lib/dataset/build.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { RunConfig } from '../lib/run-config.ts';
import { runIdentity, writeRunRecord, type RunStatus } from '../lib/run-record.ts';
import type { ShardPlan } from '../lib/stage3/shard-plan.ts';

export type { DatasetShardResult, DatasetSummary };

export interface RunRecordInput {
  runId: string;
  outputUri: string;
  config: unknown;
  /** 'running' while it runs; how it ended afterwards, with the reason in `result.error` unless completed. */
  status: RunStatus;
  result?: unknown;
}

export interface BuildDatasetInput {
  runId: string;
  outputUri: string;
  release?: { shortestSide: number };
  /** Stage 3 left the images before this one to the annotation rounds (stage3.skipAnnotated). */
  firstImage?: number;
}

export interface BuildDatasetShardInput extends BuildDatasetInput {
  shard: number;
}

export function createDatasetActivities(storeOptions: ObjectStoreOptions = {}) {
  const stores = new StoreCache(storeOptions);
  return {
    async recordRun(input: RunRecordInput): Promise<void> {
      await writeRunRecord(stores.open(input.outputUri), {
        run: input.runId,
        status: input.status,
        updatedAt: new Date().toISOString(),
        identity: runIdentity(input.config as RunConfig),
        config: input.config,
        result: input.result,
      });
    },

    /** The stage-3 plan the dataset is built from: how many shards to fan out over. */
    async planDataset(input: BuildDatasetInput): Promise<ShardPlan> {
      return requireStage3Plan(stores.open(input.outputUri), input.runId);
    },

    async buildDatasetShard(input: BuildDatasetShardInput): Promise<DatasetShardResult> {
      const ctx = Context.current();
      return buildDatasetShardFiles(stores.open(input.outputUri), stores, {
        runId: input.runId,
        shard: input.shard,
        release: input.release,
        onProgress: (progress) => ctx.heartbeat(progress),
      });
    },

    async finishDataset(input: BuildDatasetInput): Promise<DatasetSummary> {
      const ctx = Context.current();
      return finishDatasetFiles(stores.open(input.outputUri), {
        runId: input.runId,
        release: input.release,
        firstImage: input.firstImage,
        onProgress: (progress) => ctx.heartbeat(progress),
      });
    },

    /**
     * The whole dataset in one activity: what runs started before the dataset-build workflow
     * existed still call (workflows/dataset-run.ts keeps them replaying). New runs never do.
     */
    async buildDataset(input: BuildDatasetInput): Promise<DatasetSummary> {
      const ctx = Context.current();
      return buildDatasetFiles(stores.open(input.outputUri), stores, {
        runId: input.runId,
        release: input.release,
        onProgress: (progress: unknown) => ctx.heartbeat(progress),
      });
    },
  };
}

export type DatasetActivities = ReturnType<typeof createDatasetActivities>;
