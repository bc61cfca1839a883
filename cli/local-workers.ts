// The worker pools of the embedded default (`run --workers`, `demo`, `audit --workers`): the
// orchestration pool in this process, and the inference pool in a child `sa-engine worker`
// process. onnxruntime-node runs a model synchronously on the calling thread, so an in-process
// inference pool would freeze this process's event loop for seconds at a time and with it every
// workflow task and heartbeat; a separate process keeps them flowing, as separate pools do at scale.
//
// The child is supervised: a native crash, an OOM kill or a SIGKILL would otherwise leave the run
// waiting on its queue with no word. Its activities are durable (a shard resumes from its last
// heartbeat), so restarting the child is all it takes; a child that keeps dying stops the command.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultStateDir } from '../infra/dev-state.ts';
import { createSegmenterFactory } from '../lib/stage3/segmenter.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { startWorkers } from '../workers/run-workers.ts';
import { endpointAuth, type Endpoints } from './endpoints.ts';
import { TEMPORAL_AUTH_ENV } from '../lib/temporal-auth.ts';

export const CLI = resolve(import.meta.dirname, '../bin/sa-engine.mjs');

export interface LocalWorkers {
  /** Rejects, with what happened, once the inference worker has died more often than it is restarted. */
  readonly failed: Promise<never>;
  /** The inference worker's current process id (what a user would `kill`); undefined between restarts. */
  inferencePid(): number | undefined;
  shutdown(): Promise<void>;
}

export interface SupervisionOptions {
  /** Restarts before the command gives up. */
  maxRestarts?: number;
  /** Wait before restart k (the last entry repeats). */
  backoffMs?: readonly number[];
  /** Where the supervisor says what it does (default: stderr). */
  log?: (line: string) => void;
}

const DEFAULT_SUPERVISION = {
  maxRestarts: 5,
  backoffMs: [1_000, 2_000, 5_000, 10_000, 30_000],
  log: (line: string) => console.error(line),
} satisfies Required<SupervisionOptions>;

export async function startLocalWorkers(
  endpoints: Endpoints,
  supervision: SupervisionOptions = {},
): Promise<LocalWorkers> {
  const inference = new InferenceSupervisor(endpoints, { ...DEFAULT_SUPERVISION, ...supervision });
  await inference.start();
  const orchestration = await startWorkers({
    address: endpoints.address,
    namespace: endpoints.namespace,
    auth: endpointAuth(endpoints),
    queues: [TASK_QUEUES.orchestration],
    storeOptions: endpoints.storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions: endpoints.storeOptions }),
  }).catch(async (err: unknown) => {
    await inference.stop();
    throw err;
  });
  return {
    failed: inference.failed,
    inferencePid: () => inference.pid(),
    async shutdown() {
      await orchestration.shutdown();
      await inference.stop();
    },
  };
}

/** Keeps one `sa-engine worker --queues sae-gpu-inference` child alive, restarting it with backoff. */
class InferenceSupervisor {
  private child?: ChildProcess;
  private deaths = 0;
  private stopping = false;
  private restartTimer?: NodeJS.Timeout;
  private giveUp!: (err: Error) => void;
  readonly failed = new Promise<never>((_, reject) => (this.giveUp = reject));

  constructor(
    private readonly endpoints: Endpoints,
    private readonly options: Required<SupervisionOptions>,
  ) {
    this.failed.catch(() => undefined); // a caller that never races it must not see an unhandled rejection
  }

  async start(): Promise<void> {
    const child = await spawnInferenceWorker(this.endpoints);
    this.child = child;
    child.once('exit', (code, signal) => this.onExit(child.pid, describeExit(code, signal)));
  }

  pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    if (this.child) await stopChild(this.child);
  }

  private onExit(pid: number | undefined, how: string): void {
    if (this.stopping) return;
    this.deaths += 1;
    const what = `sa-engine: the inference worker${pid ? ` (pid ${pid})` : ''} ${how}`;
    if (this.deaths > this.options.maxRestarts) {
      this.giveUp(
        new Error(
          `${what}, its death number ${this.deaths} in this command, so it is not restarted again. ` +
            `The run's unfinished work waits on ${TASK_QUEUES.inference}: once the worker's output ` +
            `above says what kills it, start \`sa-engine worker --queues ${TASK_QUEUES.inference}\` to finish it.`,
        ),
      );
      return;
    }
    const { backoffMs } = this.options;
    const wait = backoffMs[Math.min(this.deaths - 1, backoffMs.length - 1)] ?? 1_000;
    this.options.log(
      `${what}; restarting it in ${wait / 1000} s (restart ${this.deaths} of ${this.options.maxRestarts}).` +
        ' Its shard resumes from the last finished batch.',
    );
    this.restartTimer = setTimeout(() => this.restart(), wait);
  }

  private restart(): void {
    if (this.stopping) return;
    this.start().catch((err: unknown) => {
      // It died again before it was ready: that is one more death, with the same backoff rule.
      this.child = undefined;
      this.onExit(undefined, `failed to start: ${(err as Error).message}`);
    });
  }
}

export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal === 'SIGKILL') return 'was killed (SIGKILL: out of memory, or killed by hand)';
  if (signal) return `was killed by ${signal}`;
  return `exited with code ${code}`;
}

/** `sa-engine worker --queues sae-gpu-inference`, resolved once it polls its queue. */
async function spawnInferenceWorker(endpoints: Endpoints): Promise<ChildProcess> {
  const args = [
    CLI,
    'worker',
    '--queues',
    TASK_QUEUES.inference,
    '--address',
    endpoints.address,
    '--namespace',
    endpoints.namespace,
    // Ctrl-C on a local run should not wait for a shard to finish: the shard resumes from its
    // last heartbeat when the run goes on (a cluster's pods drain instead, see docs/deploy.md).
    '--shutdown-grace',
    '0',
  ];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...storageEnv(endpoints), ...temporalTlsEnv(endpoints) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolveReady, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Workers running on')) resolveReady();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`it ${describeExit(code, signal)} before it was ready:\n${output}`)),
    );
  });
  child.stdout!.resume(); // keep draining its output
  return child;
}

/** The S3 settings this process resolved, passed the standard way. */
export function storageEnv(endpoints: Endpoints): NodeJS.ProcessEnv {
  const s3 = endpoints.storeOptions.s3 ?? {};
  const env: NodeJS.ProcessEnv = {};
  if (s3.endpoint) env.SAE_S3_ENDPOINT = s3.endpoint;
  if (s3.region) env.AWS_REGION = s3.region;
  if (s3.accessKeyId) env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
  if (s3.secretAccessKey) env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
  return env;
}

/** The config's `temporal.tls` as Temporal's own variables; the environment's values still win. */
export function temporalTlsEnv(endpoints: Endpoints): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const field of ['clientCertPath', 'clientKeyPath', 'serverCaCertPath', 'serverName'] as const) {
    const value = endpoints.tls?.[field];
    const name = TEMPORAL_AUTH_ENV[field];
    if (value && !process.env[name]) env[name] = value;
  }
  return env;
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM'); // the worker finishes its current activity's heartbeat and exits
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** `work`, unless the local workers give up first (their error says what died and what to do). */
export function unlessWorkersFail<T>(work: Promise<T>, local: LocalWorkers | undefined): Promise<T> {
  return local ? Promise.race([work, local.failed]) : work;
}

export interface TrainerWorker {
  readonly logFile: string;
  shutdown(): Promise<void>;
}

/**
 * The Python trainer's worker on the training queue (`python -m sae_trainer worker`), for a run
 * that retrains: the venv `npm run setup` built, the run's endpoints and S3 settings, its output in
 * a log file. Not restarted when it dies: its activities retry on the next trainer that polls.
 */
export async function startTrainerWorker(endpoints: Endpoints): Promise<TrainerWorker> {
  const trainerDir = resolve(import.meta.dirname, '../trainer');
  const python = resolve(trainerDir, '.venv/bin/python');
  if (!existsSync(python))
    throw new Error(`${python} is missing: run \`npm run setup\` to build the trainer's venv`);
  const stateDir = defaultStateDir();
  mkdirSync(stateDir, { recursive: true });
  const logFile = resolve(stateDir, 'trainer.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  const s3 = endpoints.storeOptions.s3 ?? {};
  const child = spawn(
    python,
    // A short grace: Ctrl-C on a local run should not wait out a training; the trainer stops at a
    // step boundary with its checkpoint saved, and the retry resumes from it.
    [
      ...['-m', 'sae_trainer', 'worker', '--address', endpoints.address, '--namespace', endpoints.namespace],
      ...['--shutdown-grace', '10'],
    ],
    {
      cwd: trainerDir,
      env: {
        ...process.env,
        ...(s3.endpoint ? { SAE_S3_ENDPOINT: s3.endpoint } : {}),
        ...(s3.accessKeyId ? { AWS_ACCESS_KEY_ID: s3.accessKeyId } : {}),
        ...(s3.secretAccessKey ? { AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } : {}),
        ...(s3.region ? { AWS_REGION: s3.region } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  await new Promise<void>((resolveReady, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      if (seen.includes('sae-trainer worker:')) resolveReady();
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`the trainer worker exited (${code}) before it was ready; see ${logFile}`)),
    );
  });
  return {
    logFile,
    async shutdown() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      log.end();
    },
  };
}
