// `sa-engine annotate serve FILE`: the annotation service of a run's stage-1 rounds, until Ctrl-C.
// `sa-engine annotators add NAME --config FILE`: a new annotator account; prints its token once.
import type { Command } from 'commander';
import { loadRunConfigFile } from '../../lib/run-config.ts';
import { annotatorAccounts, startAnnotationService } from '../annotation.ts';
import { connectClient, resolveEndpoints, type EndpointFlags } from '../endpoints.ts';

export function registerAnnotateCommands(program: Command): void {
  const annotate = program.command('annotate').description('Stage 1: serve the annotation tool.');
  annotate
    .command('serve')
    .description("Serve a run's annotation tasks over HTTP (the browser tool and its API) until Ctrl-C.")
    .argument('<file>', 'run config (YAML or JSON)')
    .option('--address <host:port>', 'Temporal server (default: config, TEMPORAL_ADDRESS, the dev stack)')
    .option('--namespace <ns>', 'Temporal namespace')
    .action(async (file: string, flags: EndpointFlags) => {
      const config = await loadRunConfigFile(file);
      const endpoints = resolveEndpoints(flags, config);
      const client = await connectClient(endpoints);
      const service = await startAnnotationService(config, endpoints, client);
      console.log(`Annotation tool for run ${config.run}: ${service.url} (Ctrl-C to stop).`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await service.close();
      await client.connection.close();
    });

  const annotators = program.command('annotators').description('Annotator accounts of a run.');
  annotators
    .command('add')
    .description('Create an annotator account and print its token (shown once; only its hash is stored).')
    .argument('<name>', 'lowercase letters, digits, "-" or "_"')
    .requiredOption('--config <file>', 'the run config whose output store keeps the accounts')
    .action(async (name: string, flags: { config: string }) => {
      const config = await loadRunConfigFile(flags.config);
      const token = await annotatorAccounts(config, resolveEndpoints({}, config)).add(name);
      console.log(`Annotator ${name} added. Token (shown once, keep it secret):\n${token}`);
    });
}
