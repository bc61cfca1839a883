// The audit activity: runs lib/audit over a finished run and reports the gate as data, so that the
// workflow decides how the run ends (outputs are kept either way).
import { Context } from '@temporalio/activity';
import { runAudit, type AuditSummary } from '../lib/audit/audit.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { AuditConfig } from '../lib/run-config.ts';

export interface AuditRunInput {
  runId: string;
  outputUri: string;
  audit: AuditConfig;
}

export function createAuditActivities(storeOptions: ObjectStoreOptions = {}) {
  const stores = new StoreCache(storeOptions);
  return {
    async auditRun(input: AuditRunInput): Promise<AuditSummary> {
      const ctx = Context.current();
      return runAudit(stores.open(input.outputUri), stores, {
        runId: input.runId,
        audit: input.audit,
        onProgress: (progress) => ctx.heartbeat(progress),
      });
    },
  };
}

export type AuditActivities = ReturnType<typeof createAuditActivities>;
