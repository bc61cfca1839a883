// A dataset run on the embedded default, everything in this process or its children: the worker
// pools, the annotation tool of stages 1 and 2, the Python trainer (when the run retrains SAM or
// trains stage 2's detector) and the config's simulated annotators. `sa-engine run --workers` and
// `sa-engine demo` both go through here.
//
// The simulated annotators run SAM's decoder for every click, synchronously: in this process they
// would stall the orchestration worker's workflow tasks for seconds, so they get a child process
// (`sa-engine annotate simulate`), as the inference pool does.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { follow, startRun } from '../client/runs.ts';
import type { RunConfig } from '../lib/run-config.ts';
import type { DatasetRunResult } from '../workflows/dataset-run.ts';
import { startAnnotationService, type RunningAnnotationService } from './annotation.ts';
import type { Endpoints } from './endpoints.ts';
import {
  CLI,
  describeExit,
  startTrainerWorker,
  stopChild,
  storageEnv,
  unlessWorkersFail,
  type LocalWorkers,
} from './local-workers.ts';
import { ProgressView } from './progress-view.ts';

export interface InProcessOptions {
  /** Called once the run has started and the annotation tool listens (if the run annotates). */
  onStarted?: (annotation: RunningAnnotationService | undefined) => Promise<void> | void;
  /** A task the simulated annotators leave for a person (they skip it). */
  leaveForPerson?: { round: number; imageId: number };
}

/** Whether the run's stages annotate (stage 1 or 2) and train (a SAM retrain or the detector). */
export function runNeeds(config: RunConfig): { annotation: boolean; trainer: boolean } {
  return {
    annotation: config.stage1.enabled || config.stage2.enabled,
    trainer: (config.stage1.enabled && config.stage1.retrain.enabled) || config.stage2.enabled,
  };
}

/** Starts the run, follows it with progress bars to its end, and stops what it started. */
export async function runInProcess(
  config: RunConfig,
  /** The config's file: the simulated annotators' process reads it. */
  configFile: string,
  endpoints: Endpoints,
  client: Client,
  local: LocalWorkers,
  options: InProcessOptions = {},
): Promise<DatasetRunResult> {
  const needs = runNeeds(config);
  const annotation = needs.annotation ? await startAnnotationService(config, endpoints, client) : undefined;
  const trainer = needs.trainer ? await startTrainerWorker(endpoints).catch(closing(annotation)) : undefined;
  if (trainer) console.log(`Trainer worker started (log: ${trainer.logFile}).`);
  let sims: ChildProcess | undefined;
  try {
    const handle = await startRun(client, config);
    await options.onStarted?.(annotation);
    if (annotation && config.simulatedAnnotators.enabled)
      sims = spawnSimulatedAnnotators(configFile, endpoints, annotation.url, options.leaveForPerson);
    const interrupted = whenInterrupted(config.run);
    try {
      return await unlessWorkersFail(follow(client, handle, new ProgressView(), interrupted.signal), local);
    } finally {
      interrupted.dispose();
    }
  } finally {
    // They finish the image in hand (a closed task refuses them) and stop.
    if (sims) await stopChild(sims);
    await annotation?.close();
    await trainer?.shutdown();
  }
}

/** Ctrl-C or SIGTERM while the CLI followed a run: it stops what it started; the run itself goes on. */
export class FollowInterruptedError extends Error {
  constructor(
    runId: string,
    readonly signal: NodeJS.Signals,
  ) {
    super(
      `stopped following run ${runId} on ${signal}, and the workers, annotation tool and trainer this ` +
        'command started. The run stays in Temporal and goes on once workers poll its queues ' +
        `(\`sa-engine worker --config FILE\`); \`sa-engine status ${runId}\` shows where it is, ` +
        `\`sa-engine cancel ${runId}\` stops it.`,
    );
    this.name = 'FollowInterruptedError';
  }

  /** The shell's convention: 128 + the signal's number. */
  get exitCode(): number {
    return this.signal === 'SIGINT' ? 130 : 143;
  }
}

/**
 * Aborts on the first SIGINT or SIGTERM, with a FollowInterruptedError as the reason. The Temporal
 * runtime shuts the in-process worker down on those signals, but the CLI would go on following a
 * run that then makes no progress.
 */
function whenInterrupted(runId: string): { signal: AbortSignal; dispose: () => void } {
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => controller.abort(new FollowInterruptedError(runId, signal));
  for (const signal of signals) process.once(signal, onSignal);
  return {
    signal: controller.signal,
    dispose: () => signals.forEach((signal) => process.off(signal, onSignal)),
  };
}

/** `sa-engine annotate simulate FILE --url URL`, its output into this process's stderr. */
function spawnSimulatedAnnotators(
  configFile: string,
  endpoints: Endpoints,
  url: string,
  leave: InProcessOptions['leaveForPerson'],
): ChildProcess {
  const args = [CLI, 'annotate', 'simulate', configFile, '--url', url];
  if (leave) args.push('--leave', `${leave.round}:${leave.imageId}`);
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...storageEnv(endpoints) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM')
      console.error(
        `sa-engine: the simulated annotators ${describeExit(code, signal)}; the round waits for people`,
      );
  });
  return child;
}

/** A failed start closes what started before it, then fails. */
function closing(service: RunningAnnotationService | undefined) {
  return async (err: unknown): Promise<never> => {
    await service?.close();
    throw err;
  };
}
