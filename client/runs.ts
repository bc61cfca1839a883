// Starting and following dataset runs on a Temporal server: what the CLI, the demo, benchmarks and
// tests share, so that none of them imports a CLI command.
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdReusePolicy,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import type { RunConfig } from '../lib/run-config.ts';
import { datasetRunInput } from '../lib/run-input.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { stage3ProgressQuery, type AutomaticStageResult, type Stage3Progress } from '../workflows/stage3.ts';
import { dryRun, dryRunWorkflowId } from '../workflows/dry-run.ts';
import {
  datasetRun,
  runProgressQuery,
  type DatasetRunResult,
  type RunProgress,
} from '../workflows/dataset-run.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from '../workflows/search-attributes.ts';
import { roundStatusQuery, type RoundStatus } from '../workflows/stage1-round.ts';

/** The run id is taken on this Temporal server by a run that is running or has completed. */
export class RunAlreadyExistsError extends Error {
  constructor(runId: string, status: string) {
    const what =
      status === 'RUNNING'
        ? `is running; watch it with \`sa-engine status ${runId}\``
        : `has ${status.toLowerCase()} and its outputs are kept; see them with \`sa-engine status ${runId}\``;
    super(
      `run "${runId}" already exists on this Temporal server and ${what}, or give the new run another \`run:\` id.`,
    );
    this.name = 'RunAlreadyExistsError';
  }
}

/**
 * Starts a dataset run, or resumes one under its own id that failed, was cancelled or terminated:
 * the new execution reuses the stage-3 plan and every finished shard when its inputs match those
 * recorded in storage (lib/run-record.ts); a running or completed run is not started again.
 */
export async function startRun(
  client: Client,
  config: RunConfig,
): Promise<WorkflowHandle<typeof datasetRun>> {
  const input = datasetRunInput(config);
  try {
    return await client.workflow.start(datasetRun, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: config.run,
      workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
      args: [input],
      memo: { config: input.configSummary },
      typedSearchAttributes: [
        { key: SAE_RUN, value: config.run },
        { key: SAE_STAGE, value: 'starting' },
        { key: SAE_MODEL, value: config.models.sam },
      ],
    });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    const { status } = await client.workflow.getHandle(config.run).describe();
    throw new RunAlreadyExistsError(config.run, status.name);
  }
}

export interface RunSnapshot {
  run: RunProgress;
  /** The stage-1 round running now. */
  round?: RoundStatus;
  stage3?: Stage3Progress;
}

export async function readProgress(
  client: Client,
  handle: WorkflowHandle<typeof datasetRun>,
): Promise<RunSnapshot> {
  const run = await handle.query(runProgressQuery);
  const stage3 = run.stage3WorkflowId
    ? await client.workflow
        .getHandle(run.stage3WorkflowId)
        .query(stage3ProgressQuery)
        .catch(() => undefined)
    : undefined;
  const roundId =
    run.stage === 'stage1' ? run.stage1WorkflowId : run.stage === 'stage2' ? run.stage2WorkflowId : undefined;
  const round = roundId
    ? await client.workflow
        .getHandle(roundId)
        .query(roundStatusQuery)
        .catch(() => undefined)
    : undefined;
  return { run, round, stage3 };
}

/** Where a following caller shows progress (the CLI's progress bars). */
export interface RunWatcher {
  update(snapshot: RunSnapshot): void;
  finish(result: DatasetRunResult): void;
  stop(): void;
}

/** Waits for a run's result, polling its progress once a second for `view`. */
export async function follow(
  client: Client,
  handle: WorkflowHandle<typeof datasetRun>,
  view: RunWatcher,
  /** Stops following (the run goes on): rejects with the signal's reason once no call is in flight. */
  signal?: AbortSignal,
): Promise<DatasetRunResult> {
  const call = <T>(fn: () => Promise<T>): Promise<T> => (signal ? client.withAbortSignal(signal, fn) : fn());
  let finished = false;
  const result = call(() => handle.result()).finally(() => (finished = true));
  try {
    while (!finished && !signal?.aborted) {
      const snapshot = await call(() => readProgress(client, handle)).catch(() => undefined);
      if (snapshot) view.update(snapshot);
      await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    }
    if (signal?.aborted) {
      // The cancelled long poll settles first: a connection closed under it would retry into it.
      await result.catch(() => undefined);
      throw signal.reason;
    }
    const done = await result;
    view.finish(done);
    return done;
  } finally {
    view.stop();
  }
}

/** Runs the dry run to the end; a dry run may be repeated, so its id is reused once closed. */
export async function runDryRun(client: Client, config: RunConfig): Promise<AutomaticStageResult> {
  const input = datasetRunInput(config);
  if (!input.stage3) throw new Error('a dry run looks at the images of stage 3, which this config disables');
  return client.workflow.execute(dryRun, {
    taskQueue: TASK_QUEUES.orchestration,
    workflowId: dryRunWorkflowId(config.run),
    args: [{ ...input.stage3, runId: config.run, outputUri: config.output }],
    typedSearchAttributes: [
      { key: SAE_RUN, value: config.run },
      { key: SAE_STAGE, value: 'dry-run' },
    ],
  });
}
