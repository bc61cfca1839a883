// The engine report's activity: a thin adapter over lib/report (runs/<run>/report/index.html).
import { ApplicationFailure } from '@temporalio/activity';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import { EngineReportError, writeEngineReport } from '../lib/report/engine-report.ts';

export interface EngineReportInput {
  runId: string;
  outputUri: string;
}

export interface EngineReportSummary {
  /** The report's key in the run's output store; null when it could not be written. */
  key: string | null;
  /** Each section, and whether the run had data for it. */
  sections: { name: string; filled: boolean }[];
  error?: string;
}

export function createReportActivities(storeOptions: ObjectStoreOptions = {}) {
  const stores = new StoreCache(storeOptions);
  return {
    async writeEngineReport(input: EngineReportInput): Promise<EngineReportSummary> {
      try {
        return await writeEngineReport(stores.open(input.outputUri), input.runId, { stores });
      } catch (err) {
        // A stored file the report cannot read stays unreadable on a retry.
        if (err instanceof EngineReportError)
          throw ApplicationFailure.nonRetryable(err.message, 'EngineReportError');
        throw err;
      }
    },
  };
}

export type ReportActivities = ReturnType<typeof createReportActivities>;
