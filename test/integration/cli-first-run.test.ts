// `sa-engine dev up` on a fresh machine, as `demo` and `run --workers` go through it: with an empty
// tool cache it builds the tools (a fake Go links the suite's real binaries, in seconds), says so,
// and starts a working stack from them; without Go it says what to install and starts nothing.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../infra/dev-stack.ts';
import type { DevState } from '../../infra/dev-state.ts';
import { toolPath } from '../../infra/tools.ts';
import { fakeGoDir, pathWithoutGo } from '../helpers/fake-go.ts';

const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), 'sae-first-run-'));
const stateDir = join(scratch, 'state');
const realBinaries = { temporal: toolPath('temporal'), versitygw: toolPath('versitygw') };

/** The CLI as on a machine that has never built the tools. */
function cli(args: string[], path: string) {
  const env: NodeJS.ProcessEnv = { ...process.env, SAE_CACHE_DIR: join(scratch, 'cache'), PATH: path };
  delete env.SAE_TEMPORAL_BIN;
  delete env.SAE_S3_SERVER_BIN;
  return run('node', ['bin/sa-engine.mjs', ...args, '--state-dir', stateDir], { env, timeout: 120_000 });
}

afterAll(async () => {
  await cli(['dev', 'down'], process.env.PATH ?? '').catch(() => undefined);
  rmSync(scratch, { recursive: true, force: true });
});

describe('sa-engine dev up on a fresh machine', () => {
  it('without Go, says what to install and starts nothing', async () => {
    await expect(cli(['dev', 'up'], pathWithoutGo())).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/Go is not installed[\s\S]*Install Go 1\.22 or newer/),
    });
    expect(existsSync(join(stateDir, 'dev.json'))).toBe(false);
  });

  it('builds the missing tools, saying so, and starts the stack from them', async () => {
    const path = fakeGoDir(realBinaries) + delimiter + process.env.PATH;
    const ports = [await freePort(), await freePort(), await freePort()].map(String);
    const up = await cli(
      ['dev', 'up', '--temporal-port', ports[0]!, '--ui-port', ports[1]!, '--s3-port', ports[2]!],
      path,
    );
    expect(up.stderr).toMatch(/Building temporal v\S+ with Go/);
    expect(up.stderr).toMatch(/Building versitygw v\S+ with Go/);
    expect(up.stderr).toMatch(/Built temporal v\S+, versitygw v\S+ in \d+s/);
    expect(up.stdout).toContain('Dev stack started.');

    const state = JSON.parse(readFileSync(join(stateDir, 'dev.json'), 'utf8')) as DevState;
    for (const proc of state.processes) expect(proc.command.startsWith(join(scratch, 'cache'))).toBe(true);
    expect((await cli(['dev', 'status'], path)).stdout).toMatch(/up {4}temporal[\s\S]*up {4}s3/);

    const again = await cli(['dev', 'up'], path); // tools and stack are there now: nothing is built
    expect(again.stderr).not.toMatch(/Building/);
    expect(again.stdout).toContain('already running');
  });
});
