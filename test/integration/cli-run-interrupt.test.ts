// `sa-engine run FILE --workers` stopped with Ctrl-C mid-run, as a user stops it: the CLI stops the
// workers it started and exits at once with 130 and what to do next, and the run itself stays in
// Temporal to go on later. (It used to keep following a run its own workers no longer served.)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatRunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { stage3Config, writeStage3Images } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const stack = testStack();
const REPO = resolve(import.meta.dirname, '../..');

describe('Ctrl-C on sa-engine run --workers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sae-run-interrupt-'));
  let connection: Connection;
  let client: Client;

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
  });

  afterAll(async () => {
    await connection?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stops what the command started, exits 130 and says what to do; the run goes on in Temporal', async () => {
    const fixture = await writeStage3Images(stack, 6);
    // One image a batch: the first masks file appears while most of the run is still to do.
    const config = stage3Config(fixture, stack, { shardSize: 6, batchImages: 1, pointsPerSide: 8 });
    const file = join(dir, 'run.yaml');
    writeFileSync(file, formatRunConfig(config, 'yaml'));
    const child = spawn(
      process.execPath,
      [join(REPO, 'bin/sa-engine.mjs'), 'run', file, '--workers', '--namespace', stack.temporal.namespace],
      {
        cwd: REPO,
        env: {
          ...process.env,
          AWS_ACCESS_KEY_ID: stack.s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: stack.s3.secretAccessKey,
          AWS_REGION: stack.s3.region,
          SAE_STATE_DIR: join(dir, 'state'),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    try {
      await waitFor(
        'the first image of the run',
        () => fixture.out.exists(runLayout.masks(config.run, 0)),
        180_000,
      );
      child.kill('SIGINT');
      const code = await Promise.race([
        exited,
        new Promise<'still running'>((done) => setTimeout(() => done('still running'), 60_000)),
      ]);
      expect(code, output).toBe(130);
      expect(output).toMatch(
        new RegExp(`stopped following run ${config.run} on SIGINT.*sa-engine status ${config.run}`, 's'),
      );
      const { status } = await client.workflow.getHandle(config.run).describe();
      expect(status.name).toBe('RUNNING');
    } finally {
      child.kill('SIGKILL');
      await client.workflow
        .getHandle(config.run)
        .terminate('test over')
        .catch(() => {});
    }
  });
});
