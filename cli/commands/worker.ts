// `sa-engine worker --queues ...`: run worker pools in this process until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { loadRunConfigFile } from '../../lib/run-config.ts';
import { createSegmenterFactory } from '../../lib/stage3/segmenter.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { startWorkers } from '../../workers/run-workers.ts';
import { resolveEndpoints, type EndpointFlags } from '../endpoints.ts';

interface WorkerFlags extends EndpointFlags {
  queues: string;
  config?: string;
  concurrency: string[];
  onnxThreads?: string;
}

export function registerWorkerCommands(program: Command): void {
  program
    .command('worker')
    .description('Run TypeScript workers for the given task queues (orchestration and/or inference).')
    .option(
      '--queues <list>',
      'comma-separated task queues',
      `${TASK_QUEUES.orchestration},${TASK_QUEUES.inference}`,
    )
    .option('--concurrency <queue=n>', 'activities at once on a queue (repeatable)', collect, [])
    .option('--onnx-threads <n>', 'onnxruntime intra-op threads (0 = all cores)')
    .option(
      '--config <file>',
      'the run config whose Temporal server and storage settings (storage.s3) to use; credentials still come from the environment',
    )
    .option('--address <host:port>', 'Temporal server (default: --config, TEMPORAL_ADDRESS, the dev stack)')
    .option('--namespace <ns>', 'Temporal namespace')
    .action(async (flags: WorkerFlags) => {
      const queues = flags.queues
        .split(',')
        .map((q) => q.trim())
        .filter(Boolean);
      if (queues.includes(TASK_QUEUES.training)) {
        throw new Error(
          `${TASK_QUEUES.training} is served by the Python trainer: cd trainer && .venv/bin/python -m sae_trainer worker`,
        );
      }
      // A worker on another host learns the run's storage settings from the same config file (or
      // from SAE_S3_ENDPOINT / AWS_REGION); each pool serves one storage setup.
      const config = flags.config ? await loadRunConfigFile(flags.config) : undefined;
      const endpoints = resolveEndpoints(flags, config);
      const onnxThreads = flags.onnxThreads === undefined ? undefined : Number(flags.onnxThreads);
      const running = await startWorkers({
        address: endpoints.address,
        namespace: endpoints.namespace,
        queues,
        concurrency: parseConcurrency(flags.concurrency),
        storeOptions: endpoints.storeOptions,
        segmenterFor: createSegmenterFactory({
          storeOptions: endpoints.storeOptions,
          intraOpThreads: onnxThreads,
        }),
      });
      console.log(`Workers running on ${queues.join(', ')} against ${endpoints.address} (Ctrl-C to stop).`);
      await running.done;
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function parseConcurrency(entries: string[]): Record<string, number> {
  return Object.fromEntries(
    entries.map((entry) => {
      const [queue, n] = entry.split('=');
      if (!queue || !n || !(Number(n) >= 1)) throw new Error(`--concurrency expects queue=n, got ${entry}`);
      return [queue, Number(n)];
    }),
  );
}
