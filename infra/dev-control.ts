// The dev stack as a whole: bring it up (or reuse a healthy one), check it, bring it down.
// `sa-engine dev up|down|status`, `demo` and `run --workers` share these; a start builds missing tools.
import cliProgress from 'cli-progress';
import {
  ensureBucket,
  isAlive,
  LOOPBACK,
  logTail,
  SEARCH_ATTRIBUTES,
  startDevStack,
  stopProcess,
  temporalAnswers,
} from './dev-stack.ts';
import {
  defaultStateDir,
  readDevState,
  removeDevState,
  runsCommand,
  writeDevState,
  type DevState,
} from './dev-state.ts';
import { buildTools, installLogPath, missingTools, toolVersion } from './tools.ts';

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
  await ensureTools();
  const stack = await startDevStack({
    stateDir: opts.stateDir,
    detached: true,
    temporal: { port: opts.temporalPort ?? DEFAULT_TEMPORAL_PORT, uiPort: opts.uiPort ?? 8233 },
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

const DEFAULT_TEMPORAL_PORT = 7233;

export type EmbeddedStack = 'dev-stack' | 'server-already-running' | 'named-server';

/**
 * `run --workers` with no Temporal server named, or the default one, is the embedded default as
 * `demo` is: the local stack, reused or started (its tools built first when absent). A Temporal
 * server the user already runs at the default address, with no dev stack of ours recorded, is used
 * as it is: starting our own would move it to another port and the run would silently go there.
 */
export async function ensureEmbeddedStack(
  namedAddress: string | undefined,
  opts: { stateDir?: string; namespace?: string; defaultAddress?: string } = {},
): Promise<EmbeddedStack> {
  const defaultAddress = opts.defaultAddress ?? `${LOOPBACK}:${DEFAULT_TEMPORAL_PORT}`;
  if (namedAddress !== undefined && namedAddress !== defaultAddress) return 'named-server';
  const stateDir = opts.stateDir ?? defaultStateDir();
  if (!readDevState(stateDir)) {
    const endpoint = { address: defaultAddress, namespace: opts.namespace ?? 'default' };
    const answers = await temporalAnswers(endpoint).catch(() => undefined);
    if (answers === false) throw new MissingSearchAttributesError(defaultAddress);
    if (answers === true) return 'server-already-running';
  }
  await ensureDevStack({ stateDir });
  return 'dev-stack';
}

/** A Temporal server that runs, but without the search attributes sa-engine's workflows set. */
export class MissingSearchAttributesError extends Error {
  constructor(address: string) {
    const create = Object.entries(SEARCH_ATTRIBUTES)
      .map(
        ([name, type]) =>
          `  temporal operator search-attribute create --address ${address} --name ${name} --type ${type}`,
      )
      .join('\n');
    super(
      `the Temporal server at ${address} lacks sa-engine's search attributes; create them once:\n${create}\n` +
        'or stop that server to let sa-engine start its own dev stack there',
    );
    this.name = 'MissingSearchAttributesError';
  }
}

/**
 * Builds the servers' binaries when absent, saying which one is being built and for how long. On a
 * fresh machine Go builds them once: 17 minutes on 2 busy cores, seconds when Go's cache has them.
 */
export async function ensureTools(): Promise<void> {
  const missing = missingTools();
  if (missing.length === 0) return;
  const progress = new BuildProgress();
  const code = await buildTools(missing, (tool, version) => progress.building(`${tool} ${version}`)).finally(
    () => progress.stop(),
  );
  const names = missing.map((tool) => `${tool} ${toolVersion(tool)}`).join(', ');
  if (code !== 0)
    throw new Error(
      `could not build the dev stack's ${names} (infra/install-tools.sh exited ${code}); ${installLogPath()} ends:\n` +
        logTail(installLogPath()),
    );
  console.error(`Built ${names} in ${progress.elapsed()}; they are cached for every later run.`);
}

/** A spinner line with the tool Go is building and the time so far; plain lines off a terminal. */
class BuildProgress {
  private readonly tty = process.stderr.isTTY === true;
  private readonly startedAt = Date.now();
  private readonly bar = new cliProgress.SingleBar({
    format: (_options, _params, payload: { tool: string }) =>
      `${spinnerFrame()} building ${payload.tool} with Go (${this.elapsed()}; first run only)`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
  });

  building(tool: string): void {
    if (!this.tty) console.error(`Building ${tool} with Go (first run only; up to 20 minutes) ...`);
    else if (this.bar.isActive) this.bar.update(0, { tool });
    else this.bar.start(1, 0, { tool });
  }

  stop(): void {
    if (this.bar.isActive) this.bar.stop();
  }

  elapsed(): string {
    const seconds = Math.round((Date.now() - this.startedAt) / 1000);
    return seconds < 60
      ? `${seconds}s`
      : `${Math.floor(seconds / 60)}m ${String(seconds % 60).padStart(2, '0')}s`;
  }
}

const SPINNER = '⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏';

function spinnerFrame(): string {
  return SPINNER[Math.floor(Date.now() / 100) % SPINNER.length]!;
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
