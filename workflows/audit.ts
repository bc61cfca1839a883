// Stage 4's quality audit: compare a sample of automatic masks with human ones and apply the gate.
// Draw the sample, match it chunk by chunk through a bounded window, then write the report; each
// step stores its result, so a retry or a resumed audit redoes only what was not done (lib/audit).
// A run that misses its gate fails with the figures in the message; its outputs stay in storage.
import {
  ApplicationFailure,
  condition,
  patched,
  proxyActivities,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { AuditActivities, AuditRunInput } from '../activities/audit.ts';
import type { AuditSummary } from '../lib/audit/audit.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { AUDIT_RUN_ERRORS, retryPolicy } from './retry-policies.ts';
import { SAE_STAGE } from './search-attributes.ts';

// Matching masks and drawing the gallery is CPU work: it runs on the inference pool, which owns the
// cores, in chunks. Audits started before ran as one auditRun activity, first on the orchestration
// pool, then on the inference pool; they replay that way.
const AUDIT_ON_INFERENCE_POOL = 'audit-on-inference-pool';
const AUDIT_IN_CHUNKS = 'audit-in-chunks-on-inference-pool';

/** Chunks matched at once, across the inference pool. */
export const AUDIT_CHUNK_WINDOW = 4;

const onPool = (taskQueue: string) =>
  proxyActivities<AuditActivities>({
    taskQueue,
    startToCloseTimeout: '6 hours',
    heartbeatTimeout: '2 minutes',
    // Bad reference data does not fix itself on a retry.
    retry: retryPolicy(AUDIT_RUN_ERRORS),
  });

/** The audit a run runs itself, as its child (workflows/dataset-run.ts). */
export function auditWorkflowId(runId: string): string {
  return `${runId}/audit`;
}

/**
 * `sa-engine audit RUN`: an id of its own, so that a manual audit never takes the id the run's own
 * audit needs (which made a run in flight fail "its audit"). One id per run, not one per call:
 * Temporal refuses a second manual audit of a run while one is still running (both would write the
 * same report), and allows a new one once it has finished.
 */
export function manualAuditWorkflowId(runId: string): string {
  return `${runId}/manual-audit`;
}

export async function auditStage(input: AuditRunInput): Promise<AuditSummary> {
  upsertSearchAttributes([{ key: SAE_STAGE, value: 'audit' }]);
  const summary = patched(AUDIT_IN_CHUNKS)
    ? await auditInChunks(input)
    : await onPool(
        patched(AUDIT_ON_INFERENCE_POOL) ? TASK_QUEUES.inference : TASK_QUEUES.orchestration,
      ).auditRun(input);
  if (!summary.gate.passed) {
    throw ApplicationFailure.nonRetryable(
      `the mask quality audit failed its gate: ${summary.gate.failures.join('; ')} (report: ${summary.reportHtmlKey})`,
      'AuditGateError',
      summary,
    );
  }
  return summary;
}

async function auditInChunks(input: AuditRunInput): Promise<AuditSummary> {
  const { drawAuditSample, auditChunk, finishAudit } = onPool(TASK_QUEUES.inference);
  // At most audit.sampleSize images: the sample's chunks fit one workflow history.
  const { chunks } = await drawAuditSample(input);
  let running = 0;
  let failure: unknown;
  for (let chunk = 0; chunk < chunks && failure === undefined; chunk++) {
    await condition(() => running < AUDIT_CHUNK_WINDOW || failure !== undefined);
    if (failure !== undefined) break;
    running += 1;
    auditChunk({ ...input, chunk })
      .catch((err: unknown) => (failure ??= err)) // only errors a retry cannot fix reach here
      .finally(() => (running -= 1));
  }
  await condition(() => running === 0);
  if (failure !== undefined) throw failure;
  return finishAudit(input);
}
