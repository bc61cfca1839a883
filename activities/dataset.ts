// Activities around a whole run: its record in storage (run.json) and the final dataset manifest,
// statistics and release copies (lib/dataset/build.ts).
import { Context } from '@temporalio/activity';
import { buildDataset as buildDatasetFiles, type DatasetSummary } from '../lib/dataset/build.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { RunConfig } from '../lib/run-config.ts';
import { runIdentity, writeRunRecord, type RunStatus } from '../lib/run-record.ts';

export type { DatasetSummary };

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
