// A dataset run: the stages its config enables, in order, then the dataset manifest and statistics.
// Workflow id = run id, so starting the same run twice is refused by the server, not duplicated.
import {
  ApplicationFailure,
  ChildWorkflowFailure,
  defineQuery,
  executeChild,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { DatasetActivities, DatasetSummary, RunRecordInput } from '../activities/dataset.ts';
import type { Stage3Spec } from '../activities/stage3.ts';
import type { AuditSummary } from '../lib/audit/audit.ts';
import type { AuditConfig } from '../lib/run-config.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { auditStage, auditWorkflowId } from './audit.ts';
import { automaticStage, type AutomaticStageResult } from './automatic-stage.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from './search-attributes.ts';

const { recordRun, buildDataset } = proxyActivities<DatasetActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '2 minutes',
});

export interface DatasetRunInput {
  runId: string;
  outputUri: string;
  modelUri: string;
  /** Small summary shown in the Temporal UI memo; the full resolved config lives in run.json. */
  configSummary: Record<string, string | number | boolean>;
  /** Resolved config, written to runs/<run>/run.json by the first activity. */
  config: unknown;
  stage3?: Omit<Stage3Spec, 'runId' | 'outputUri'>;
  release?: { shortestSide: number };
  audit?: AuditConfig;
}

export type RunStage = 'starting' | 'stage3' | 'dataset' | 'audit' | 'done';

export interface RunProgress {
  stage: RunStage;
  stage3WorkflowId?: string;
}

export interface DatasetRunResult {
  runId: string;
  stage3?: AutomaticStageResult;
  dataset: DatasetSummary;
  audit?: AuditSummary;
}

export const runProgressQuery = defineQuery<RunProgress>('progress');

export function stage3WorkflowId(runId: string): string {
  return `${runId}/stage3`;
}

export async function datasetRun(input: DatasetRunInput): Promise<DatasetRunResult> {
  const { runId, outputUri } = input;
  const progress: RunProgress = { stage: 'starting' };
  setHandler(runProgressQuery, () => progress);
  upsertMemo({ config: input.configSummary });
  upsertSearchAttributes([{ key: SAE_MODEL, value: input.modelUri }]);

  const record: RunRecordInput = { runId, outputUri, config: input.config, status: 'running' };
  await recordRun(record);

  let stage3: AutomaticStageResult | undefined;
  if (input.stage3) {
    enterStage(progress, 'stage3');
    progress.stage3WorkflowId = stage3WorkflowId(runId);
    stage3 = await executeChild(automaticStage, {
      workflowId: progress.stage3WorkflowId,
      args: [{ spec: { ...input.stage3, runId, outputUri } }],
      typedSearchAttributes: [
        { key: SAE_RUN, value: runId },
        { key: SAE_STAGE, value: 'stage3' },
        { key: SAE_MODEL, value: input.modelUri },
      ],
    });
  }

  enterStage(progress, 'dataset');
  const dataset = await buildDataset({ runId, outputUri, release: input.release });

  let audit: AuditSummary | undefined;
  if (input.audit) {
    enterStage(progress, 'audit');
    try {
      audit = await executeChild(auditStage, {
        workflowId: auditWorkflowId(runId),
        args: [{ runId, outputUri, audit: input.audit }],
        typedSearchAttributes: [{ key: SAE_RUN, value: runId }],
      });
    } catch (err) {
      // The run ends as failed with the audit's figures in the message; every output stays.
      const reason = err instanceof ChildWorkflowFailure && err.cause ? err.cause.message : String(err);
      await recordRun({ ...record, status: 'failed', result: { stage3, dataset, error: reason } });
      throw ApplicationFailure.nonRetryable(`run ${runId} failed its audit: ${reason}`, 'AuditGateError');
    }
  }

  await recordRun({ ...record, status: 'completed', result: { stage3, dataset, audit } });
  enterStage(progress, 'done');
  return { runId, stage3, dataset, audit };
}

function enterStage(progress: RunProgress, stage: RunStage): void {
  progress.stage = stage;
  upsertSearchAttributes([{ key: SAE_STAGE, value: stage }]);
}
