// `sa-engine annotate serve FILE`: the annotation service of a run's stage-1 rounds, until Ctrl-C.
// `sa-engine annotators add NAME --config FILE`: a new annotator account; prints its token once.
import type { Command } from 'commander';
import { loadRunConfigFile } from '../../lib/run-config.ts';
import type { TaskResponse } from '../../service/annotation-service.ts';
import { annotatorAccounts, startAnnotationService, startSimulatedAnnotators } from '../annotation.ts';
import { parsePort } from '../flags.ts';
import { connectClient, resolveEndpoints, type EndpointFlags } from '../endpoints.ts';

export function registerAnnotateCommands(program: Command): void {
  const annotate = program.command('annotate').description('Stage 1: serve the annotation tool.');
  annotate
    .command('serve')
    .description("Serve a run's annotation tasks over HTTP (the browser tool and its API) until Ctrl-C.")
    .argument('<file>', 'run config (YAML or JSON)')
    .option('--address <host:port>', 'Temporal server (default: config, TEMPORAL_ADDRESS, the dev stack)')
    .option('--namespace <ns>', 'Temporal namespace')
    .option('--host <host>', 'listen on this address (default: stage1.service.host)')
    .option('--port <port>', 'listen on this port (default: stage1.service.port)', (text) =>
      parsePort(text, '--port'),
    )
    .action(async (file: string, flags: EndpointFlags & { host?: string; port?: number }) => {
      const config = await loadRunConfigFile(file);
      const endpoints = resolveEndpoints(flags, config);
      const client = await connectClient(endpoints);
      const service = await startAnnotationService(config, endpoints, client, {
        host: flags.host,
        port: flags.port,
      });
      console.log(`Annotation tool for run ${config.run}: ${service.url} (Ctrl-C to stop).`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await service.close();
      await client.connection.close();
    });

  annotate
    .command('simulate')
    .description(
      "Run the config's simulated annotators against an annotation service until SIGTERM (`run --workers` starts this).",
    )
    .argument('<file>', 'run config (YAML or JSON)')
    .requiredOption('--url <url>', "the annotation service's address")
    .option('--leave <round:image>', 'leave this task for a person (e.g. 1:0)')
    .action(async (file: string, flags: { url: string; leave?: string }) => {
      const config = await loadRunConfigFile(file);
      const endpoints = resolveEndpoints({}, config);
      const leave = flags.leave ? leaveRule(flags.leave) : undefined;
      let stopping = false;
      // Finish the image in hand (a closed task refuses them), then stop.
      process.once('SIGTERM', () => (stopping = true));
      const service = { url: flags.url, accounts: annotatorAccounts(config, endpoints) };
      const results = await startSimulatedAnnotators(config, endpoints, service, () => stopping, { leave });
      const masks = results.reduce((n, r) => n + r.masks, 0);
      console.log(
        `Simulated annotators done: ${masks} masks on ${results.reduce((n, r) => n + r.images, 0)} images.`,
      );
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

/** "1:0" → a rule that matches round 1's image 0. */
function leaveRule(spec: string): (task: TaskResponse) => boolean {
  const m = /^(\d+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`--leave expects ROUND:IMAGE (e.g. 1:0), got "${spec}"`);
  const [round, image] = [Number(m[1]), Number(m[2])];
  return (task) => task.round === round && task.imageId === image;
}
