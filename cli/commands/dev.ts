// `sa-engine dev up | down | status`: the local dev stack (Temporal dev server + S3 server).
import type { Command } from 'commander';
import { bringDown, describeStack, ensureDevStack, stackHealth } from '../../infra/dev-control.ts';
import { defaultStateDir, readDevState } from '../../infra/dev-state.ts';

interface UpFlags {
  stateDir: string;
  temporalPort: string;
  uiPort: string;
  s3Port: string;
  bucket: string;
}

export function registerDevCommands(program: Command): void {
  const dev = program
    .command('dev')
    .description('Run the local dev stack: a Temporal dev server and an S3-compatible server.');

  dev
    .command('up')
    .description('Start the dev stack in the background (reuses a running one).')
    .option('--state-dir <dir>', 'where the SQLite file, S3 data and logs live', defaultStateDir())
    .option('--temporal-port <port>', 'Temporal gRPC port (a free one if taken)', '7233')
    .option('--ui-port <port>', 'Temporal Web UI port (a free one if taken)', '8233')
    .option('--s3-port <port>', 'S3 server port (a free one if taken)', '9000')
    .option('--bucket <name>', 'bucket to create', 'sa-engine')
    .action(async (flags: UpFlags) => {
      const { state, reused } = await ensureDevStack({
        stateDir: flags.stateDir,
        temporalPort: Number(flags.temporalPort),
        uiPort: Number(flags.uiPort),
        s3Port: Number(flags.s3Port),
        bucket: flags.bucket,
      });
      console.log(reused ? 'The dev stack is already running.' : 'Dev stack started.');
      console.log(describeStack(state).join('\n'));
    });

  dev
    .command('down')
    .description('Stop exactly the processes `dev up` started.')
    .option('--state-dir <dir>', 'state folder used by `dev up`', defaultStateDir())
    .action(async (flags: { stateDir: string }) => {
      const stopped = await bringDown(flags.stateDir);
      if (stopped === undefined) console.log(`No dev stack recorded in ${flags.stateDir}; nothing to stop.`);
      else
        console.log(stopped.length ? `Stopped ${stopped.join(', ')}.` : 'Its processes had already exited.');
    });

  dev
    .command('status')
    .description('Say what runs where.')
    .option('--state-dir <dir>', 'state folder used by `dev up`', defaultStateDir())
    .action(async (flags: { stateDir: string }) => {
      const state = readDevState(flags.stateDir);
      if (!state) {
        console.log('The dev stack is not running (start it with `sa-engine dev up`).');
        process.exitCode = 1;
        return;
      }
      const health = await stackHealth(state);
      for (const h of health) console.log(`${h.ok ? 'up  ' : 'DOWN'}  ${h.name.padEnd(9)} ${h.detail}`);
      console.log(describeStack(state).join('\n'));
      if (!health.every((h) => h.ok)) process.exitCode = 1;
    });
}
