// infra/dev-control.ts ensureTools on a fresh machine (an empty SAE_CACHE_DIR): it builds exactly the
// missing tools with infra/install-tools.sh, says what it builds, and without Go says to install it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ensureTools } from '../../infra/dev-control.ts';
import { missingTools, toolPath, toolVersion } from '../../infra/tools.ts';
import { fakeGoDir, pathWithoutGo } from '../helpers/fake-go.ts';

let cache: string;
let said: string[];

beforeEach(() => {
  cache = mkdtempSync(join(tmpdir(), 'sae-tools-'));
  vi.stubEnv('SAE_CACHE_DIR', cache);
  vi.stubEnv('SAE_TEMPORAL_BIN', undefined);
  vi.stubEnv('SAE_S3_SERVER_BIN', undefined);
  said = [];
  vi.spyOn(console, 'error').mockImplementation((line: string) => void said.push(line));
});

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
  rmSync(cache, { recursive: true, force: true });
});

describe('ensureTools', () => {
  it('builds the missing tools into the cache with Go, saying which, then finds them', async () => {
    vi.stubEnv('PATH', fakeGoDir() + delimiter + process.env.PATH);
    expect(missingTools()).toEqual(['temporal', 'versitygw']);

    await ensureTools();

    expect(missingTools()).toEqual([]);
    expect(execFileSync(toolPath('temporal'), { encoding: 'utf8' })).toContain('temporal built by fake go');
    expect(said).toContain(
      `Building temporal ${toolVersion('temporal')} with Go (first run only; up to 20 minutes) ...`,
    );
    expect(said).toContain(
      `Building versitygw ${toolVersion('versitygw')} with Go (first run only; up to 20 minutes) ...`,
    );
    expect(said.at(-1)).toMatch(/^Built temporal v\S+, versitygw v\S+ in \d+s/);
  });

  it('builds nothing when every tool is there or named by its override variable', async () => {
    vi.stubEnv('SAE_TEMPORAL_BIN', '/nonexistent/temporal'); // the user's to provide: toolPath says so
    vi.stubEnv('PATH', fakeGoDir() + delimiter + process.env.PATH);
    await ensureTools();
    expect(said.filter((line) => line.startsWith('Building'))).toEqual([
      `Building versitygw ${toolVersion('versitygw')} with Go (first run only; up to 20 minutes) ...`,
    ]);
    said.length = 0;
    await ensureTools();
    expect(said).toEqual([]);
    expect(() => toolPath('temporal')).toThrow(/SAE_TEMPORAL_BIN/);
  });

  it('without Go, fails saying what to install', async () => {
    vi.stubEnv('PATH', pathWithoutGo());
    await expect(ensureTools()).rejects.toThrow(/Go is not installed[\s\S]*Install Go 1\.22 or newer/);
    expect(missingTools()).toEqual(['temporal', 'versitygw']);
  });
});
