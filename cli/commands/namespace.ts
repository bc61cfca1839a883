// `sa-engine namespace prepare`: once per Temporal namespace on a cluster, register the search
// attributes sa-engine's workflows keep current (the dev stack registers them itself). Temporal
// Cloud takes them through its own tools instead (docs/deploy.md).
import type { Command } from 'commander';
import { missingSearchAttributes, SEARCH_ATTRIBUTES } from '../../infra/dev-stack.ts';
import { connectClient, resolveEndpoints, type EndpointFlags } from '../endpoints.ts';

export function registerNamespaceCommands(program: Command): void {
  const namespace = program.command('namespace').description('Prepare a Temporal namespace for sa-engine.');
  namespace
    .command('prepare')
    .description("Register sa-engine's search attributes in the namespace (a no-op when they are there).")
    .option('--address <host:port>', 'Temporal server (default: TEMPORAL_ADDRESS, the dev stack)')
    .option('--namespace <ns>', 'Temporal namespace (default: TEMPORAL_NAMESPACE, "default")')
    .option('--check', 'only say what is missing; exit 1 if anything is')
    .action(async (flags: EndpointFlags & { check?: boolean }) => {
      const endpoints = resolveEndpoints(flags);
      const client = await connectClient(endpoints);
      try {
        const missing = await missingSearchAttributes(client.connection, endpoints.namespace, {
          addMissing: !flags.check,
        });
        const total = Object.keys(SEARCH_ATTRIBUTES).length;
        if (missing.length === 0) {
          console.log(`Namespace ${endpoints.namespace} has sa-engine's ${total} search attributes.`);
        } else if (flags.check) {
          console.log(`Namespace ${endpoints.namespace} lacks: ${missing.join(', ')}`);
          process.exitCode = 1;
        } else {
          console.log(`Registered in ${endpoints.namespace}: ${missing.join(', ')}`);
        }
      } finally {
        await client.connection.close();
      }
    });
}
