// A dataset run: the stages its config enables, in order, then the dataset manifest and statistics.
// Workflow id = run id, so starting the same run twice is refused by the server, not duplicated.
// runs/<run>/run.json says how the run ended in every case: completed, failed (with the reason) or
// cancelled; the final record is written even while the run is being cancelled.
//
// The dataset is built by a child workflow (`<run>/dataset`, workflows/dataset-build.ts) that fans
// out over stage 3's shards; runs started before it existed built it in one activity and still do.
//
// A run whose config disables stage 3 builds its dataset (and audit, release copies) from the
// stage-3 output an earlier run with the same id left under the same output prefix; where there is
// none, it fails at once with a NoStage3OutputError that says so (never retried).
import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  defineQuery,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { DatasetActivities, DatasetSummary, RunRecordInput } from '../activities/dataset.ts';
import type { EngineReportSummary, ReportActivities } from '../activities/report.ts';
import type { Stage3Spec } from '../activities/stage3.ts';
import type { AuditSummary } from '../lib/audit/audit.ts';
import type { AuditConfig } from '../lib/run-config.ts';
import { innermostCause, innermostMessage } from '../lib/innermost-cause.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { auditStage, auditWorkflowId } from './audit.ts';
import { executeContinuingChild } from './continuing-child.ts';
import { datasetBuild, datasetWorkflowId } from './dataset-build.ts';
import { annotationRound, roundWorkflowId, type RoundResult, type RoundSpec } from './stage1-round.ts';
import { Stage1Retraining, type RetrainSummary, type Stage1RetrainSpec } from './stage1-retraining.ts';
import { semiAutomaticStage, type Stage2Input, type Stage2Result } from './stage2.ts';
import { automaticStage, type AutomaticStageResult } from './stage3.ts';
import {
  BUILD_DATASET_ERRORS,
  ENGINE_REPORT_ERRORS,
  RECORD_RUN_ERRORS,
  retryPolicy,
} from './retry-policies.ts';
import { SAE_MODEL, SAE_ROUND, SAE_RUN, SAE_STAGE } from './search-attributes.ts';
import { roundTag } from '../lib/stage1/task-messages.ts';

const { recordRun } = proxyActivities<DatasetActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '5 minutes',
  retry: retryPolicy(RECORD_RUN_ERRORS),
});

/** Histories recorded before the dataset-build workflow built the dataset in this one activity. */
const { buildDataset } = proxyActivities<DatasetActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '2 minutes',
  retry: retryPolicy(BUILD_DATASET_ERRORS),
});

const { writeEngineReport } = proxyActivities<ReportActivities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '30 minutes',
  retry: retryPolicy(ENGINE_REPORT_ERRORS, { maximumAttempts: 3 }),
});

const DATASET_BUILD_WORKFLOW = 'dataset-build-workflow';
/** Runs that end by writing the engine report; histories from before it end without. */
const ENGINE_REPORT = 'engine-report';

export interface DatasetRunInput {
  runId: string;
  outputUri: string;
  modelUri: string;
  /** Small summary shown in the Temporal UI memo; the full resolved config lives in run.json. */
  configSummary: Record<string, string | number | boolean>;
  /** Resolved config, written to runs/<run>/run.json by the first activity. */
  config: unknown;
  /** Stage 1: `rounds` rounds one after another, round k over the next imagesPerRound images. */
  stage1?: {
    rounds: number;
    imagesPerRound: number;
    round: Omit<RoundSpec, 'runId' | 'outputUri' | 'round' | 'firstImage' | 'imageCount'>;
    /** Retraining between rounds through the model registry (workflows/stage1-retraining.ts). */
    retrain?: Stage1RetrainSpec;
  };
  /** Stage 2: semi-automatic rounds, pre-filled by the detector (workflows/stage2.ts). */
  stage2?: Stage2Input;
  stage3?: Omit<Stage3Spec, 'runId' | 'outputUri'>;
  release?: { shortestSide: number };
  audit?: AuditConfig;
}

export type RunStage = 'starting' | 'stage1' | 'stage2' | 'stage3' | 'dataset' | 'audit' | 'report' | 'done';

export interface RunProgress {
  stage: RunStage;
  /** What the stages have finished so far: closed rounds, retrains, stage 3's model (`sa-engine status`). */
  done: RunSoFar;
  /** The round workflow running now (stage 1's, then stage 2's). */
  stage1WorkflowId?: string;
  stage2WorkflowId?: string;
  stage3WorkflowId?: string;
  datasetWorkflowId?: string;
}

export interface DatasetRunResult {
  runId: string;
  stage1?: RoundResult[];
  /** The SAM retrains stages 1 and 2 started, each with its version and the gate's word. */
  retrains?: RetrainSummary[];
  /** Stage 2's rounds and its detector's trainings. */
  stage2?: Stage2Result;
  /** The registry version stage 3 segmented with ("sam@v2"); absent when it used the run's model. */
  stage3Model?: string;
  stage3?: AutomaticStageResult;
  /** Absent only when the run annotated stage-1 rounds and ran no stage 3. */
  dataset?: DatasetSummary;
  audit?: AuditSummary;
  /** The engine report (runs/<run>/report/index.html); absent in runs recorded before it existed. */
  report?: EngineReportSummary;
}

/** The run's result as far as it goes; the arrays grow in place as rounds and retrains end. */
export type RunSoFar = Pick<DatasetRunResult, 'stage1' | 'retrains' | 'stage2' | 'stage3Model'>;

export const runProgressQuery = defineQuery<RunProgress>('progress');

export function stage3WorkflowId(runId: string): string {
  return `${runId}/stage3`;
}

export async function datasetRun(input: DatasetRunInput): Promise<DatasetRunResult> {
  const { runId, outputUri } = input;
  const progress: RunProgress = { stage: 'starting', done: {} };
  setHandler(runProgressQuery, () => progress);
  upsertMemo({ config: input.configSummary });
  upsertSearchAttributes([{ key: SAE_MODEL, value: input.modelUri }]);

  const record: RunRecordInput = { runId, outputUri, config: input.config, status: 'running' };
  // Not cancellable: a cancel arriving now must not let this write land after the final record.
  await CancellationScope.nonCancellable(() => recordRun(record));

  let stage1: RoundResult[] | undefined;
  let retrains: RetrainSummary[] | undefined;
  let stage2: Stage2Result | undefined;
  let stage3: AutomaticStageResult | undefined;
  let dataset: DatasetSummary | undefined;
  let audit: AuditSummary | undefined;
  let stage3Model: string | undefined;
  let report: EngineReportSummary | undefined;
  try {
    // With retraining, the rounds are assisted by the registry's champion, which retrains promote.
    let retraining: Stage1Retraining | undefined;
    if (input.stage1) {
      enterStage(progress, 'stage1');
      stage1 = progress.done.stage1 = [];
      retraining = input.stage1.retrain
        ? await Stage1Retraining.start(runId, outputUri, input.modelUri, input.stage1.retrain)
        : undefined;
      progress.done.retrains = retraining?.retrains;
      for (let round = 1; round <= input.stage1.rounds; round++) {
        progress.stage1WorkflowId = roundWorkflowId(runId, round);
        const firstImage = (round - 1) * input.stage1.imagesPerRound;
        const champion = await retraining?.beforeRound();
        const spec = {
          ...input.stage1.round,
          ...(champion ? { modelUri: champion.uri } : {}),
          runId,
          outputUri,
          round,
          firstImage,
          imageCount: input.stage1.imagesPerRound,
        };
        stage1.push(
          await executeContinuingChild(annotationRound, {
            workflowId: progress.stage1WorkflowId,
            args: [spec],
            typedSearchAttributes: [
              { key: SAE_RUN, value: runId },
              { key: SAE_STAGE, value: 'stage1' },
              { key: SAE_ROUND, value: roundTag(runId, round) },
              { key: SAE_MODEL, value: champion?.tag ?? input.modelUri },
            ],
          }),
        );
        const masks = stage1.reduce((n, r) => n + r.summary.masks, 0);
        await retraining?.afterRound(
          stage1.map((_, i) => i + 1),
          masks,
        );
      }
    }

    if (input.stage2) {
      enterStage(progress, 'stage2');
      const context = {
        runId,
        outputUri,
        modelUri: input.modelUri,
        roundsDone: (stage1 ?? []).map((_, i) => i + 1),
        masksDone: (stage1 ?? []).reduce((n, r) => n + r.summary.masks, 0),
        retraining,
        onRound: (workflowId: string) => (progress.stage2WorkflowId = workflowId),
        done: (progress.done.stage2 = { rounds: [], detectorRetrains: [] }),
      };
      stage2 = await semiAutomaticStage(context, input.stage2);
    }
    await retraining?.finish();
    retrains = retraining?.retrains;

    if (input.stage3) {
      enterStage(progress, 'stage3');
      progress.stage3WorkflowId = stage3WorkflowId(runId);
      // The fully automatic stage segments with the SAM version stages 1 and 2 promoted last.
      stage3Model = progress.done.stage3Model = retraining?.champion.tag;
      const { shardTemplate } = input.stage3;
      const modelUri = retraining?.champion.uri ?? shardTemplate.modelUri;
      stage3 = await executeContinuingChild(automaticStage, {
        workflowId: progress.stage3WorkflowId,
        args: [
          { spec: { ...input.stage3, shardTemplate: { ...shardTemplate, modelUri }, runId, outputUri } },
        ],
        typedSearchAttributes: [
          { key: SAE_RUN, value: runId },
          { key: SAE_STAGE, value: 'stage3' },
          { key: SAE_MODEL, value: stage3Model ?? input.modelUri },
        ],
      });
    }

    // A run of annotation rounds alone has no automatic masks to build a dataset from.
    if (input.stage3 || !(input.stage1 || input.stage2)) {
      enterStage(progress, 'dataset');
      dataset = await runDatasetBuild(input, progress).catch((err: unknown) => {
        throw input.stage3 ? err : explainNoStage3(runId, outputUri, err);
      });
    }

    if (input.audit) {
      enterStage(progress, 'audit');
      try {
        audit = await executeChild(auditStage, {
          workflowId: auditWorkflowId(runId),
          args: [{ runId, outputUri, audit: input.audit }],
          typedSearchAttributes: [{ key: SAE_RUN, value: runId }],
        });
      } catch (err) {
        if (isCancellation(err)) throw err;
        // The run ends as failed with the audit's figures in the message; every output stays.
        const reason = err instanceof ChildWorkflowFailure && err.cause ? err.cause.message : String(err);
        throw ApplicationFailure.nonRetryable(`run ${runId} failed its audit: ${reason}`, 'AuditGateError');
      }
    }
  } catch (err) {
    const cancelled = isCancellation(err);
    const error = cancelled ? `cancelled during ${progress.stage}` : failureReason(err);
    const result = { stage1, retrains, stage2, stage3Model, stage3, dataset, audit, error };
    const status = cancelled ? 'cancelled' : 'failed';
    await CancellationScope.nonCancellable(() => recordRun({ ...record, status, result }));
    throw err;
  }

  const result = { stage1, retrains, stage2, stage3Model, stage3, dataset, audit };
  await recordRun({ ...record, status: 'completed', result });
  // After the final record, so the report shows the run as completed.
  if (patched(ENGINE_REPORT)) {
    enterStage(progress, 'report');
    report = await writeEngineReport({ runId, outputUri }).catch((err: unknown) => {
      if (isCancellation(err)) throw err;
      // The run's outputs are complete without it; `sa-engine report RUN` builds it again.
      return { key: null, sections: [], error: failureReason(err) };
    });
  }
  enterStage(progress, 'done');
  return { runId, ...result, report };
}

function runDatasetBuild(input: DatasetRunInput, progress: RunProgress): Promise<DatasetSummary> {
  const { runId, outputUri, release } = input;
  if (!patched(DATASET_BUILD_WORKFLOW)) return buildDataset({ runId, outputUri, release });
  progress.datasetWorkflowId = datasetWorkflowId(runId);
  return executeContinuingChild(datasetBuild, {
    workflowId: progress.datasetWorkflowId,
    args: [{ runId, outputUri, release, firstImage: input.stage3?.shardTemplate.firstImage }],
    typedSearchAttributes: [
      { key: SAE_RUN, value: runId },
      { key: SAE_STAGE, value: 'dataset' },
    ],
  });
}

/** With stage 3 off, "no stage-3 output" means the config asked for a dataset of nothing: say so. */
function explainNoStage3(runId: string, outputUri: string, err: unknown): unknown {
  const cause = innermostCause(err);
  if (!(cause instanceof ApplicationFailure && cause.type === 'NoStage3OutputError')) return err;
  return ApplicationFailure.nonRetryable(
    `run ${runId} disables stage 3, so it builds on the stage-3 output an earlier run ${runId} left under ` +
      `${outputUri}, and there is none to build on: ${cause.message}. Enable stage 3 in the run's config.`,
    'NoStage3OutputError',
  );
}

/** The failure at the bottom of a chain (child workflow → activity → the error it threw). */
/** The innermost failure's type and message: what actually went wrong, not "Child Workflow execution failed". */
function failureReason(err: unknown): string {
  const inner = innermostCause(err);
  if (inner instanceof ApplicationFailure && inner.type && inner !== err)
    return `${inner.type}: ${inner.message}`;
  return innermostMessage(err);
}

function enterStage(progress: RunProgress, stage: RunStage): void {
  progress.stage = stage;
  upsertSearchAttributes([{ key: SAE_STAGE, value: stage }]);
}
