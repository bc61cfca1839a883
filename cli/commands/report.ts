// `sa-engine report RUN`: the engine report of a run, finished or not
// (runs/<run>/report/index.html), from what the run stored. The run's output prefix comes from
// --output, its config file, or the run's memo on the Temporal server.
import type { Command } from 'commander';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { loadRunConfigFile } from '../../lib/run-config.ts';
import { writeEngineReport } from '../../lib/report/engine-report.ts';
import { connectClient, resolveEndpoints, type EndpointFlags } from '../endpoints.ts';

interface ReportFlags extends EndpointFlags {
  config?: string;
  output?: string;
}

export function registerReportCommands(program: Command): void {
  program
    .command('report')
    .description("Write a run's engine report (runs/<run>/report/index.html), finished or not.")
    .argument('<run>', 'run id')
    .option('--config <file>', "the run's config file (for its output prefix)")
    .option('--output <uri>', "the run's output prefix (instead of --config)")
    .option(
      '--address <host:port>',
      'Temporal server, asked for the output prefix when neither flag is given',
    )
    .option('--namespace <ns>', 'Temporal namespace')
    .action(async (runId: string, flags: ReportFlags) => {
      const config = flags.config ? await loadRunConfigFile(flags.config) : undefined;
      const endpoints = resolveEndpoints(flags, config);
      const outputUri = flags.output ?? config?.output ?? (await outputFromServer(runId, flags));
      const stores = new StoreCache(endpoints.storeOptions);
      const out = stores.open(outputUri);
      try {
        const report = await writeEngineReport(out, runId, { stores });
        const empty = report.sections.filter((s) => !s.filled).map((s) => s.name);
        console.log(`Engine report of ${runId}: ${out.uri(report.key)}`);
        console.log(
          `  ${report.sections.length - empty.length}/${report.sections.length} sections with data` +
            (empty.length > 0 ? ` (not yet: ${empty.join(', ')})` : ''),
        );
      } finally {
        await stores.close();
      }
    });
}

/** The output prefix the run recorded in its memo when it started. */
async function outputFromServer(runId: string, flags: EndpointFlags): Promise<string> {
  const client = await connectClient(resolveEndpoints(flags));
  try {
    const { memo } = await client.workflow.getHandle(runId).describe();
    const output = (memo?.config as { output?: unknown } | undefined)?.output;
    if (typeof output !== 'string')
      throw new Error(`run ${runId} has no output prefix in its memo; pass --output or --config`);
    return output;
  } finally {
    await client.connection.close();
  }
}
