// The audit's activities: thin adapters over lib/audit. A workflow runs the audit as three steps
// (draw the sample, match it chunk by chunk, finish the report); `auditRun` is the three in one,
// for audits started before that. The gate comes back as data, so that the workflow decides how
// the run ends (outputs are kept either way).
import { Context } from '@temporalio/activity';
import {
  auditChunk,
  drawSample,
  finishAudit,
  runAudit,
  type AuditSummary,
  type DrawnSample,
  type RunAuditOptions,
} from '../lib/audit/audit.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { AuditConfig } from '../lib/run-config.ts';

export interface AuditRunInput {
  runId: string;
  outputUri: string;
  audit: AuditConfig;
}

export interface AuditChunkInput extends AuditRunInput {
  chunk: number;
}

export function createAuditActivities(storeOptions: ObjectStoreOptions = {}) {
  const stores = new StoreCache(storeOptions);
  const optionsOf = (input: AuditRunInput): RunAuditOptions => {
    const ctx = Context.current();
    return { runId: input.runId, audit: input.audit, onProgress: (progress) => ctx.heartbeat(progress) };
  };
  return {
    async drawAuditSample(input: AuditRunInput): Promise<DrawnSample> {
      return drawSample(stores.open(input.outputUri), stores, optionsOf(input));
    },
    async auditChunk(input: AuditChunkInput): Promise<{ chunk: number; images: number; reused: boolean }> {
      return auditChunk(stores.open(input.outputUri), stores, optionsOf(input), input.chunk);
    },
    async finishAudit(input: AuditRunInput): Promise<AuditSummary> {
      return finishAudit(stores.open(input.outputUri), stores, optionsOf(input));
    },
    async auditRun(input: AuditRunInput): Promise<AuditSummary> {
      return runAudit(stores.open(input.outputUri), stores, optionsOf(input));
    },
  };
}

export type AuditActivities = ReturnType<typeof createAuditActivities>;
