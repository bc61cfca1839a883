// `sa-engine worker --queues ...`: run worker pools in this process until SIGINT/SIGTERM. The same
// command line runs on a laptop and in a Kubernetes pod (infra/helm/sa-engine); every flag can
// come from the environment instead, which is how the chart sets them.
import { Option, type Command } from 'commander';
import { loadRunConfigFile } from '../../lib/run-config.ts';
import { createSegmenterFactory } from '../../lib/stage3/segmenter.ts';
import { describeTemporalAuth } from '../../lib/temporal-auth.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { startHealthServer } from '../../workers/health-server.ts';
import { startWorkers } from '../../workers/run-workers.ts';
import { endpointAuth, resolveEndpoints, type EndpointFlags } from '../endpoints.ts';
import { parsePort } from '../flags.ts';

interface WorkerFlags extends EndpointFlags {
  queues: string;
  config?: string;
  concurrency: string[];
  onnxThreads?: string;
  healthPort?: string;
  deploymentName?: string;
  buildId?: string;
  shutdownGrace: string;
}

/** A CLI worker finishes what it holds on Ctrl-C; a pod says how long in --shutdown-grace. */
const DEFAULT_SHUTDOWN_GRACE_SECONDS = 30;

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
    .addOption(
      new Option('--health-port <port>', 'serve GET /healthz and /readyz on this port').env(
        'SAE_HEALTH_PORT',
      ),
    )
    .addOption(
      new Option(
        '--deployment-name <name>',
        'Worker Versioning: the worker deployment (with --build-id)',
      ).env('SAE_DEPLOYMENT_NAME'),
    )
    .addOption(
      new Option('--build-id <id>', 'Worker Versioning: this build (with --deployment-name)').env(
        'SAE_BUILD_ID',
      ),
    )
    .addOption(
      new Option(
        '--shutdown-grace <seconds>',
        'after SIGTERM, how long activities in flight may run before they are cancelled (and retried elsewhere)',
      )
        .env('SAE_SHUTDOWN_GRACE_SECONDS')
        .default(String(DEFAULT_SHUTDOWN_GRACE_SECONDS)),
    )
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
      const version = workerVersion(flags);
      const shutdownGraceMs = seconds(flags.shutdownGrace, '--shutdown-grace') * 1000;
      const healthPort =
        flags.healthPort === undefined ? undefined : parsePort(flags.healthPort, '--health-port');
      // A worker on another host learns the run's storage settings from the same config file (or
      // from SAE_S3_ENDPOINT / AWS_REGION); each pool serves one storage setup.
      const config = flags.config ? await loadRunConfigFile(flags.config) : undefined;
      const endpoints = resolveEndpoints(flags, config);
      const auth = endpointAuth(endpoints);
      const onnxThreads = flags.onnxThreads === undefined ? undefined : Number(flags.onnxThreads);
      const running = await startWorkers({
        address: endpoints.address,
        namespace: endpoints.namespace,
        auth,
        queues,
        concurrency: parseConcurrency(flags.concurrency),
        storeOptions: endpoints.storeOptions,
        segmenterFor: createSegmenterFactory({
          storeOptions: endpoints.storeOptions,
          intraOpThreads: onnxThreads,
        }),
        version,
        shutdownGraceMs,
      });
      const health =
        healthPort === undefined
          ? undefined
          : await startHealthServer({ port: healthPort, ready: running.ready });
      console.log(
        `Workers running on ${queues.join(', ')} against ${endpoints.address} ` +
          `(namespace ${endpoints.namespace}, ${describeTemporalAuth(auth)}` +
          (version ? `, build ${version.buildId} of ${version.deploymentName}` : '') +
          (health ? `, health on ${health.url}` : '') +
          '; Ctrl-C to stop).',
      );
      try {
        await running.done;
      } finally {
        await health?.close();
      }
    });
}

function workerVersion(flags: WorkerFlags) {
  const { deploymentName, buildId } = flags;
  if ((deploymentName === undefined) !== (buildId === undefined)) {
    throw new Error('Worker Versioning needs both --deployment-name and --build-id (or neither)');
  }
  return deploymentName && buildId ? { deploymentName, buildId } : undefined;
}

function seconds(text: string, flag: string): number {
  const value = Number(text);
  if (!(value >= 0)) throw new Error(`${flag} expects seconds (>= 0), got ${text}`);
  return value;
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
