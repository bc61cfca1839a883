// The dev stack as a whole: bring it up (or reuse a healthy one), check it, bring it down.
// `sa-engine dev up|down|status` and `sa-engine demo` share these.
import { ensureBucket, isAlive, startDevStack, stopProcess, temporalAnswers } from './dev-stack.ts';
import { readDevState, removeDevState, runsCommand, writeDevState, type DevState } from './dev-state.ts';

export interface UpOptions {
  stateDir: string;
  temporalPort?: number;
  uiPort?: number;
  s3Port?: number;
  bucket?: string;
}

export interface Health {
  name: string;
  ok: boolean;
  detail: string;
}

/** Starts the stack detached, or returns the running one when every part still answers. */
export async function ensureDevStack(opts: UpOptions): Promise<{ state: DevState; reused: boolean }> {
  const existing = readDevState(opts.stateDir);
  if (existing && (await stackHealth(existing)).every((h) => h.ok)) return { state: existing, reused: true };
  if (existing) await stopStack(existing); // half-dead leftovers from an earlier `up`
  const stack = await startDevStack({
    stateDir: opts.stateDir,
    detached: true,
    temporal: { port: opts.temporalPort ?? 7233, uiPort: opts.uiPort ?? 8233 },
    s3: { port: opts.s3Port ?? 9000, bucket: opts.bucket ?? 'sa-engine' },
  });
  const state: DevState = {
    startedAt: new Date().toISOString(),
    stateDir: opts.stateDir,
    info: stack.info,
    processes: stack.processes,
  };
  writeDevState(state);
  return { state, reused: false };
}

/** Stops exactly the recorded processes that still run the recorded binaries; forgets the stack. */
export async function bringDown(stateDir: string): Promise<string[] | undefined> {
  const state = readDevState(stateDir);
  if (!state) return undefined;
  const stopped = await stopStack(state);
  removeDevState(stateDir);
  return stopped;
}

async function stopStack(state: DevState): Promise<string[]> {
  const stopped: string[] = [];
  for (const proc of state.processes) {
    if (!runsCommand(proc.pid, proc.command)) continue;
    await stopProcess(proc.pid);
    stopped.push(`${proc.name} (pid ${proc.pid})`);
  }
  return stopped;
}

export async function stackHealth(state: DevState): Promise<Health[]> {
  const probes: Record<string, () => Promise<unknown>> = {
    temporal: () =>
      temporalAnswers(state.info.temporal).then(
        (ok) => ok || Promise.reject(new Error('search attributes missing')),
      ),
    s3: () => ensureBucket(state.info.s3),
  };
  return Promise.all(
    state.processes.map(async (proc): Promise<Health> => {
      const where = `pid ${proc.pid}, log ${proc.logFile}`;
      if (!isAlive(proc.pid) || !runsCommand(proc.pid, proc.command))
        return { name: proc.name, ok: false, detail: `not running (${where})` };
      try {
        await probes[proc.name]?.();
        return { name: proc.name, ok: true, detail: `answering (${where})` };
      } catch (err) {
        return {
          name: proc.name,
          ok: false,
          detail: `running but not answering: ${(err as Error).message} (${where})`,
        };
      }
    }),
  );
}

export function describeStack(state: DevState): string[] {
  const { temporal, s3 } = state.info;
  return [
    `  Temporal   ${temporal.address} (namespace ${temporal.namespace})`,
    `  Web UI     ${temporal.uiUrl}`,
    `  S3         ${s3.endpoint} bucket ${s3.bucket} (region ${s3.region})`,
    `  state      ${state.stateDir}`,
  ];
}
