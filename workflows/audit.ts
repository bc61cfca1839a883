// Stage 4's quality audit: compare a sample of automatic masks with human ones and apply the gate.
// A run that misses its gate fails with the figures in the message; its outputs stay in storage.
import { ApplicationFailure, proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { AuditActivities, AuditRunInput } from '../activities/audit.ts';
import type { AuditSummary } from '../lib/audit/audit.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { SAE_STAGE } from './search-attributes.ts';

const { auditRun } = proxyActivities<AuditActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '2 minutes',
  // Bad reference data does not fix itself on a retry.
  retry: { maximumAttempts: 5, nonRetryableErrorTypes: ['AuditInputError', 'RleError'] },
});

export function auditWorkflowId(runId: string): string {
  return `${runId}/audit`;
}

export async function auditStage(input: AuditRunInput): Promise<AuditSummary> {
  upsertSearchAttributes([{ key: SAE_STAGE, value: 'audit' }]);
  const summary = await auditRun(input);
  if (!summary.gate.passed) {
    throw ApplicationFailure.nonRetryable(
      `the mask quality audit failed its gate: ${summary.gate.failures.join('; ')} (report: ${summary.reportHtmlKey})`,
      'AuditGateError',
      summary,
    );
  }
  return summary;
}
