// `sa-engine run FILE`, `status RUN`, `list`, `cancel RUN`: launch dataset runs and watch them.
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowIdReusePolicy,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import type { Command } from 'commander';
import { ensureEmbeddedStack } from '../../infra/dev-control.ts';
import { loadRunConfigFile, type RunConfig } from '../../lib/run-config.ts';
import { joinUri } from '../../lib/object-uri.ts';
import { datasetRunInput } from '../../lib/run-input.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import {
  stage3ProgressQuery,
  type AutomaticStageResult,
  type Stage3Progress,
} from '../../workflows/automatic-stage.ts';
import { dryRun, dryRunWorkflowId } from '../../workflows/dry-run.ts';
import {
  datasetRun,
  runProgressQuery,
  type DatasetRunResult,
  type RunProgress,
} from '../../workflows/dataset-run.ts';
import { SAE_MODEL, SAE_RUN, SAE_STAGE } from '../../workflows/search-attributes.ts';
import {
  connectClient,
  resolveEndpoints,
  workflowUrl,
  type EndpointFlags,
  type Endpoints,
} from '../endpoints.ts';
import { ProgressView } from '../progress-view.ts';
import { startLocalWorkers, unlessWorkersFail } from '../local-workers.ts';

interface RunFlags extends EndpointFlags {
  detach?: boolean;
  dryRun?: boolean;
  workers?: boolean;
}

export function registerRunCommands(program: Command): void {
  const withEndpoints = (cmd: Command) =>
    cmd
      .option('--address <host:port>', 'Temporal server (default: config, TEMPORAL_ADDRESS, the dev stack)')
      .option('--namespace <ns>', 'Temporal namespace');

  withEndpoints(program.command('run'))
    .description('Start a dataset run from a config file and follow it with progress bars.')
    .argument('<file>', 'run config (YAML or JSON)')
    .option('--detach', 'start the run and return at once')
    .option('--dry-run', "read every image's header and estimate the work, without running the model")
    .option(
      '--workers',
      'also run the workers in this process (the embedded default; otherwise start `sa-engine worker`)',
    )
    .action(async (file: string, flags: RunFlags) => {
      const config = await loadRunConfigFile(file);
      if (flags.workers)
        await ensureEmbeddedStack(flags.address ?? process.env.TEMPORAL_ADDRESS ?? config.temporal.address);
      const endpoints = resolveEndpoints(flags, config);
      const client = await connectClient(endpoints);
      const local = flags.workers ? await startLocalWorkers(endpoints) : undefined;
      try {
        if (flags.dryRun)
          return printDryRun(await unlessWorkersFail(runDryRun(client, config), local), config);
        const handle = await startRun(client, config);
        announce(endpoints, config.run);
        if (flags.detach) return;
        const result = await unlessWorkersFail(follow(client, handle), local);
        printResult(result);
      } finally {
        await local?.shutdown();
        await client.connection.close();
      }
    });

  withEndpoints(program.command('status'))
    .description('Show where a run is: stage, images done and failed, masks.')
    .argument('<run>', 'run id')
    .action(async (runId: string, flags: EndpointFlags) => {
      const endpoints = resolveEndpoints(flags);
      const client = await connectClient(endpoints);
      try {
        for (const line of await describeRun(client, runId)) console.log(line);
        const url = workflowUrl(endpoints, runId);
        if (url) console.log(`  ${url}`);
      } finally {
        await client.connection.close();
      }
    });

  withEndpoints(program.command('list'))
    .description('List dataset runs, newest first.')
    .action(async (flags: EndpointFlags) => {
      const client = await connectClient(resolveEndpoints(flags));
      try {
        for await (const wf of client.workflow.list({ query: `WorkflowType = 'datasetRun'` })) {
          const stage = wf.typedSearchAttributes.get(SAE_STAGE) ?? '';
          console.log(
            `${wf.workflowId.padEnd(30)} ${wf.status.name.padEnd(12)} ${stage.padEnd(10)} ${wf.startTime.toISOString()}`,
          );
        }
      } finally {
        await client.connection.close();
      }
    });

  withEndpoints(program.command('cancel'))
    .description('Cancel a run; finished shards and their masks stay in storage.')
    .argument('<run>', 'run id')
    .action(async (runId: string, flags: EndpointFlags) => {
      const client = await connectClient(resolveEndpoints(flags));
      try {
        await client.workflow.getHandle(runId).cancel();
        console.log(`Cancellation requested for ${runId}.`);
      } finally {
        await client.connection.close();
      }
    });
}

export class RunAlreadyExistsError extends Error {
  constructor(runId: string) {
    super(
      `a run with id "${runId}" already exists on this Temporal server, so it was not started again. ` +
        `Watch it with \`sa-engine status ${runId}\`, or give the new run another \`run:\` id.`,
    );
    this.name = 'RunAlreadyExistsError';
  }
}

export async function startRun(
  client: Client,
  config: RunConfig,
): Promise<WorkflowHandle<typeof datasetRun>> {
  const input = datasetRunInput(config);
  try {
    return await client.workflow.start(datasetRun, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: config.run,
      // A finished run's outputs are in storage under its id: refuse to run it again, too.
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      args: [input],
      memo: { config: input.configSummary },
      typedSearchAttributes: [
        { key: SAE_RUN, value: config.run },
        { key: SAE_STAGE, value: 'starting' },
        { key: SAE_MODEL, value: config.models.sam },
      ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new RunAlreadyExistsError(config.run);
    throw err;
  }
}

function announce(endpoints: Endpoints, runId: string): void {
  console.log(`Started run ${runId} on ${endpoints.address} (namespace ${endpoints.namespace}).`);
  const url = workflowUrl(endpoints, runId);
  if (url) console.log(`Temporal UI: ${url}`);
}

export interface RunSnapshot {
  run: RunProgress;
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
  return { run, stage3 };
}

export async function follow(
  client: Client,
  handle: WorkflowHandle<typeof datasetRun>,
): Promise<DatasetRunResult> {
  const view = new ProgressView();
  let finished = false;
  const result = handle.result().finally(() => (finished = true));
  try {
    while (!finished) {
      const snapshot = await readProgress(client, handle).catch(() => undefined);
      if (snapshot) view.update(snapshot);
      await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    }
    const done = await result;
    view.finish(done);
    return done;
  } finally {
    view.stop();
  }
}

/**
 * What `sa-engine status` prints: where a running run is, and for a closed one how it ended with
 * its figures and outputs (from its result in the history, so no worker needs to be up).
 */
export async function describeRun(client: Client, runId: string): Promise<string[]> {
  const handle = client.workflow.getHandle<typeof datasetRun>(runId);
  const { status, memo } = await handle.describe();
  if (status.name === 'RUNNING') {
    const progress = await readProgress(client, handle).catch(() => undefined);
    if (!progress) return [`${runId}: RUNNING (no worker has answered yet)`];
    const lines = [`${runId}: RUNNING, stage ${progress.run.stage}`];
    if (progress.stage3) lines.push(`  stage3   ${describeStage3(progress.stage3)}`);
    return lines;
  }
  try {
    const output = (memo?.config as { output?: string } | undefined)?.output;
    const where = (key: string) => (output ? joinUri(output, key) : key);
    return [`${runId}: ${status.name}`, ...describeResult(await handle.result(), where)];
  } catch (err) {
    return [`${runId}: ${status.name}`, `  reason   ${failureReason(err)}`];
  }
}

function describeResult(result: DatasetRunResult, where: (key: string) => string): string[] {
  const lines: string[] = [];
  if (result.stage3) lines.push(`  stage3   ${describeStage3({ ...result.stage3, running: 0 })}`);
  const { dataset, audit } = result;
  lines.push(`  dataset  ${dataset.images} images, ${dataset.masks} masks, ${dataset.imagesFailed} failed`);
  lines.push(`  manifest ${where(dataset.manifestKey)}`, `  stats    ${where(dataset.statsKey)}`);
  if (dataset.imagesFailed > 0) lines.push(`  failed   ${where(dataset.failedKey)}`);
  if (audit) {
    const share = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
    lines.push(
      `  audit    mean IoU ${audit.meanIou?.toFixed(3) ?? 'n/a'}, ${share(audit.shareAbove090)} above 0.90, ` +
        `${share(audit.shareAbove075)} above 0.75 on ${audit.imagesAudited} images`,
      `  report   ${where(audit.reportHtmlKey)}`,
    );
  }
  return lines;
}

/** The innermost message of a failed run: the error that a retry could not fix. */
function failureReason(err: unknown): string {
  let cause = err as Error | undefined;
  while (cause && (cause as { cause?: Error }).cause) cause = (cause as { cause?: Error }).cause;
  return cause?.message ?? String(err);
}

function describeStage3(p: Stage3Progress): string {
  return `${p.imagesDone + p.imagesFailed}/${p.images} images (${p.imagesFailed} failed), ${p.masks} masks, shards ${p.shardsDone}/${p.shards}`;
}

function printResult(result: DatasetRunResult): void {
  console.log(`Run ${result.runId} completed.`);
  if (result.stage3) console.log(`  stage3: ${describeStage3({ ...result.stage3, running: 0 })}`);
  console.log(`  dataset manifest: ${result.dataset.manifestKey}`);
  console.log(`  statistics:       ${result.dataset.statsKey}`);
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

function printDryRun(result: AutomaticStageResult, config: RunConfig): void {
  const work = result.work ?? { megapixels: 0, encoderRuns: 0, prompts: 0 };
  console.log(`Dry run of ${config.run}: ${result.images} images in ${result.shards} shards.`);
  console.log(`  readable   ${result.imagesDone} (${work.megapixels.toFixed(1)} megapixels)`);
  console.log(
    `  unreadable ${result.imagesFailed} (listed in runs/${config.run}/stage3/shards/*.probe.jsonl)`,
  );
  console.log(`  work       ${work.encoderRuns} encoder runs, ${work.prompts} decoder prompts`);
}
