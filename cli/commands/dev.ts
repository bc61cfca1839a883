// `sa-engine dev up | down | status`: the local dev stack (Temporal dev server + S3 server).
import type { Command } from 'commander';
import { isAlive, startDevStack, stopProcess, temporalAnswers, ensureBucket } from '../../infra/dev-stack.ts';
import { defaultStateDir, readDevState, removeDevState, runsCommand, writeDevState, type DevState } from '../../infra/dev-state.ts';

interface UpOptions {
  stateDir: string;
  temporalPort: string;
  uiPort: string;
  s3Port: string;
  bucket: string;
}

export function registerDevCommands(program: Command): void {
  const dev = program.command('dev').description('Run the local dev stack: a Temporal dev server and an S3-compatible server.');

  dev
    .command('up')
    .description('Start the dev stack in the background (reuses a running one).')
    .option('--state-dir <dir>', 'where the SQLite file, S3 data and logs live', defaultStateDir())
    .option('--temporal-port <port>', 'Temporal gRPC port (a free one if taken)', '7233')
    .option('--ui-port <port>', 'Temporal Web UI port (a free one if taken)', '8233')
    .option('--s3-port <port>', 'S3 server port (a free one if taken)', '9000')
    .option('--bucket <name>', 'bucket to create', 'sa-engine')
    .action(async (opts: UpOptions) => {
      const existing = readDevState(opts.stateDir);
      if (existing && (await stackHealth(existing)).every((h) => h.ok)) {
        console.log('The dev stack is already running.');
        printStack(existing);
        return;
      }
      if (existing) await stopStack(existing); // half-dead leftovers from an earlier `up`
      const stack = await startDevStack({
        stateDir: opts.stateDir,
        detached: true,
        temporal: { port: Number(opts.temporalPort), uiPort: Number(opts.uiPort) },
        s3: { port: Number(opts.s3Port), bucket: opts.bucket },
      });
      const state: DevState = {
        startedAt: new Date().toISOString(),
        stateDir: opts.stateDir,
        info: stack.info,
        processes: stack.processes,
      };
      writeDevState(state);
      console.log('Dev stack started.');
      printStack(state);
    });

  dev
    .command('down')
    .description('Stop exactly the processes `dev up` started.')
    .option('--state-dir <dir>', 'state folder used by `dev up`', defaultStateDir())
    .action(async (opts: { stateDir: string }) => {
      const state = readDevState(opts.stateDir);
      if (!state) {
        console.log('No dev stack recorded in ' + opts.stateDir + '; nothing to stop.');
        return;
      }
      const stopped = await stopStack(state);
      removeDevState(opts.stateDir);
      console.log(stopped.length ? `Stopped ${stopped.join(', ')}.` : 'Its processes had already exited.');
    });

  dev
    .command('status')
    .description('Say what runs where.')
    .option('--state-dir <dir>', 'state folder used by `dev up`', defaultStateDir())
    .action(async (opts: { stateDir: string }) => {
      const state = readDevState(opts.stateDir);
      if (!state) {
        console.log('The dev stack is not running (start it with `sa-engine dev up`).');
        process.exitCode = 1;
        return;
      }
      const health = await stackHealth(state);
      for (const h of health) console.log(`${h.ok ? 'up  ' : 'DOWN'}  ${h.name.padEnd(9)} ${h.detail}`);
      printStack(state);
      if (!health.every((h) => h.ok)) process.exitCode = 1;
    });
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

interface Health {
  name: string;
  ok: boolean;
  detail: string;
}

async function stackHealth(state: DevState): Promise<Health[]> {
  const probes: Record<string, () => Promise<unknown>> = {
    temporal: () => temporalAnswers(state.info.temporal).then((ok) => ok || Promise.reject(new Error('search attributes missing'))),
    s3: () => ensureBucket(state.info.s3),
  };
  return Promise.all(
    state.processes.map(async (proc): Promise<Health> => {
      const where = `pid ${proc.pid}, log ${proc.logFile}`;
      if (!isAlive(proc.pid) || !runsCommand(proc.pid, proc.command)) return { name: proc.name, ok: false, detail: `not running (${where})` };
      const probe = probes[proc.name];
      try {
        await probe?.();
        return { name: proc.name, ok: true, detail: `answering (${where})` };
      } catch (err) {
        return { name: proc.name, ok: false, detail: `running but not answering: ${(err as Error).message} (${where})` };
      }
    }),
  );
}

function printStack(state: DevState): void {
  const { temporal, s3 } = state.info;
  console.log(`  Temporal   ${temporal.address} (namespace ${temporal.namespace})`);
  console.log(`  Web UI     ${temporal.uiUrl}`);
  console.log(`  S3         ${s3.endpoint} bucket ${s3.bucket} (region ${s3.region})`);
  console.log(`  state      ${state.stateDir}`);
}
