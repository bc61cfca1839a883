// `sa-engine run FILE`, `status RUN`, `list`, `cancel RUN`: launch dataset runs and watch them.
import type { Command } from 'commander';
import { describeRun, describeRunResult } from '../../client/run-status.ts';
import { follow, runDryRun, startRun } from '../../client/runs.ts';
import { ensureEmbeddedStack } from '../../infra/dev-control.ts';
import { loadRunConfigFile, type RunConfig } from '../../lib/run-config.ts';
import type { AutomaticStageResult } from '../../workflows/stage3.ts';
import type { DatasetRunResult } from '../../workflows/dataset-run.ts';
import { SAE_STAGE } from '../../workflows/search-attributes.ts';
import {
  connectClient,
  resolveEndpoints,
  workflowUrl,
  type EndpointFlags,
  type Endpoints,
} from '../endpoints.ts';
import { startLocalWorkers, unlessWorkersFail } from '../local-workers.ts';
import { runInProcess, runNeeds } from '../run-in-process.ts';
import { ProgressView } from '../progress-view.ts';

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
      if (flags.workers) {
        const address = flags.address ?? process.env.TEMPORAL_ADDRESS ?? config.temporal.address;
        const stack = await ensureEmbeddedStack(address, { namespace: config.temporal.namespace });
        if (stack === 'server-already-running')
          console.error(`Using the Temporal server already running at ${address}; no dev stack started.`);
      }
      const endpoints = resolveEndpoints(flags, config);
      const client = await connectClient(endpoints);
      const local = flags.workers ? await startLocalWorkers(endpoints) : undefined;
      try {
        if (flags.dryRun)
          return printDryRun(await unlessWorkersFail(runDryRun(client, config), local), config);
        // On the embedded default the annotation tool, the trainer and the simulated annotators run here too.
        if (local && !flags.detach) {
          const result = await runInProcess(config, file, endpoints, client, local, {
            onStarted: (annotation) => {
              announce(endpoints, config.run);
              if (annotation) console.log(`Annotation tool: ${annotation.url}`);
            },
          });
          return printResult(result);
        }
        const handle = await startRun(client, config);
        announce(endpoints, config.run);
        if (runNeeds(config).annotation)
          console.log(`Serve the annotation tool with: sa-engine annotate serve ${file}`);
        if (flags.detach) return;
        printResult(await follow(client, handle, new ProgressView()));
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

function announce(endpoints: Endpoints, runId: string): void {
  console.log(`Started run ${runId} on ${endpoints.address} (namespace ${endpoints.namespace}).`);
  const url = workflowUrl(endpoints, runId);
  if (url) console.log(`Temporal UI: ${url}`);
}

function printResult(result: DatasetRunResult): void {
  console.log(`Run ${result.runId} completed.`);
  for (const line of describeRunResult(result)) console.log(line);
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
