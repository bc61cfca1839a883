// Worker pools as separate processes (`sa-engine worker`), so a test can SIGKILL one the way a node
// dies, mid-activity, with no chance to clean up.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { StackInfo } from '../../infra/stack-info.ts';
import { projectPython } from './python-oracle.ts';

const CLI = resolve(import.meta.dirname, '../../bin/sa-engine.mjs');

export interface WorkerProcess {
  child: ChildProcess;
  logFile: string;
  /** SIGKILL, then wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (what Kubernetes sends first), then wait; resolves with the exit code. */
  terminate(): Promise<number | null>;
}

export interface SpawnWorkerOptions {
  queues: string[];
  /** stdout and stderr go here, for the failure message. */
  logFile: string;
  /** A folder without a dev.json, so the worker does not pick up someone's `dev up` stack. */
  stateDir: string;
  readyTimeoutMs?: number;
  /** `--config FILE`: the worker takes its storage settings from this run config, not SAE_S3_ENDPOINT. */
  configFile?: string;
  /** Default: the stack's namespace. */
  namespace?: string;
  /** More flags for `sa-engine worker` (e.g. --deployment-name, --shutdown-grace). */
  args?: string[];
}

/** Starts `sa-engine worker` against the stack and resolves once it polls its queues. */
export async function spawnWorkerProcess(stack: StackInfo, opts: SpawnWorkerOptions): Promise<WorkerProcess> {
  const args = [CLI, 'worker', '--queues', opts.queues.join(','), '--address', stack.temporal.address];
  if (opts.configFile) args.push('--config', opts.configFile);
  const env = { ...process.env, ...workerEnv(stack, opts.stateDir) };
  if (opts.configFile) delete env.SAE_S3_ENDPOINT;
  args.push('--namespace', opts.namespace ?? stack.temporal.namespace, ...(opts.args ?? []));
  const child = spawn(process.execPath, args, {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const worker = workerProcess(child, opts.logFile);
  try {
    await waitForOutput(child, /Workers running on/, opts.readyTimeoutMs ?? 60_000);
  } catch (err) {
    await worker.kill();
    throw new Error(`${(err as Error).message}\n--- ${opts.logFile} ---\n${readLog(opts.logFile)}`);
  }
  return worker;
}

/** How `sa-engine worker` finds the dev S3 server: the endpoint and the standard AWS variables. */
function workerEnv(stack: StackInfo, stateDir: string): NodeJS.ProcessEnv {
  return {
    SAE_S3_ENDPOINT: stack.s3.endpoint,
    AWS_ACCESS_KEY_ID: stack.s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: stack.s3.secretAccessKey,
    AWS_REGION: stack.s3.region,
    SAE_STATE_DIR: stateDir,
    TEMPORAL_ADDRESS: stack.temporal.address,
  };
}

function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => finish(new Error(`worker not ready within ${timeoutMs / 1000}s`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      if (pattern.test(seen)) finish();
    };
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`worker exited (${code ?? signal}) before it was ready`));
    const finish = (err?: Error) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolvePromise();
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

function workerProcess(child: ChildProcess, logFile: string): WorkerProcess {
  return {
    child,
    logFile,
    kill: () => killAndWait(child),
    terminate: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

export function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '(no log)';
  }
}

const ROOT = resolve(import.meta.dirname, '../..');

/** Starts the Python trainer's worker (`python -m sae_trainer worker`) on the training queue. */
export async function spawnTrainerProcess(
  stack: StackInfo,
  opts: Omit<SpawnWorkerOptions, 'queues'>,
): Promise<WorkerProcess> {
  const args = [
    '-m',
    'sae_trainer',
    'worker',
    '--address',
    stack.temporal.address,
    '--namespace',
    stack.temporal.namespace,
  ];
  const child = spawn(projectPython, args, {
    cwd: resolve(ROOT, 'trainer'),
    // One torch thread: this machine's two cores are shared with the rest of the suite.
    env: {
      ...process.env,
      ...workerEnv(stack, opts.stateDir),
      SAE_TORCH_THREADS: '1',
      SAE_TRAINER_WORKDIR: resolve(opts.stateDir, 'trainer-work'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(opts.logFile, { flags: 'a' });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const worker = workerProcess(child, opts.logFile);
  try {
    await waitForOutput(child, /sae-trainer worker:/, opts.readyTimeoutMs ?? 120_000);
  } catch (err) {
    await worker.kill();
    throw new Error(`${(err as Error).message}\n--- ${opts.logFile} ---\n${readLog(opts.logFile)}`);
  }
  return worker;
}
