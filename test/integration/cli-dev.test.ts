// `sa-engine dev up | status | down` as a user runs them: real processes, real ports, and nothing
// left running afterwards. Uses its own state folder and ports, apart from the suite's stack.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, isAlive } from '../../infra/dev-stack.ts';
import type { DevState } from '../../infra/dev-state.ts';
import { toolPath } from '../../infra/tools.ts';

const run = promisify(execFile);
const stateDir = mkdtempSync(join(tmpdir(), 'sae-cli-dev-'));
const cli = (...args: string[]) =>
  run('node', ['bin/sa-engine.mjs', 'dev', ...args, '--state-dir', stateDir], { timeout: 120_000 });

afterAll(async () => {
  await cli('down').catch(() => undefined);
  rmSync(stateDir, { recursive: true, force: true });
});

describe('sa-engine dev', () => {
  it('brings up a working stack, reports it, and takes down exactly what it started', async () => {
    // Ask for the suite stack's ports' neighbours to be taken: up must fall back to free ports.
    const busy = await freePort();
    const up = await cli(
      'up',
      '--temporal-port',
      String(busy),
      '--ui-port',
      String(await freePort()),
      '--s3-port',
      String(await freePort()),
    );
    expect(up.stdout).toContain('Dev stack started.');
    const state = JSON.parse(readFileSync(join(stateDir, 'dev.json'), 'utf8')) as DevState;

    const ui = await fetch(state.info.temporal.uiUrl);
    expect(ui.status).toBe(200);
    const list = await run(toolPath('temporal'), [
      'workflow',
      'list',
      '--address',
      state.info.temporal.address,
    ]);
    expect(list.stderr).toBe('');
    const s3 = await fetch(state.info.s3.endpoint);
    expect([200, 403]).toContain(s3.status); // anonymous requests are refused, but the server answers

    const status = await cli('status');
    expect(status.stdout).toMatch(/up {4}temporal/);
    expect(status.stdout).toMatch(/up {4}s3/);
    expect((await cli('up')).stdout).toContain('already running');

    const down = await cli('down');
    expect(down.stdout).toContain('Stopped temporal');
    for (const proc of state.processes) expect(isAlive(proc.pid)).toBe(false);
    await expect(cli('status')).rejects.toMatchObject({ code: 1 });
  });
});
