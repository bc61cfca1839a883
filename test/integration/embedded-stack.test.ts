// `run --workers` on the default address: a Temporal server the user already runs there is used,
// not shadowed by a dev stack of ours on another port (which the run would then silently go to).
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureEmbeddedStack, MissingSearchAttributesError } from '../../infra/dev-control.ts';
import { testStack } from '../helpers/stack.ts';

describe('ensureEmbeddedStack', () => {
  const { temporal } = testStack();
  let stateDir: string;

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'sae-embedded-'));
  });
  afterAll(() => rm(stateDir, { recursive: true, force: true }));

  it('uses a Temporal server already running at the default address, and starts nothing', async () => {
    const stack = await ensureEmbeddedStack(undefined, {
      stateDir,
      namespace: temporal.namespace,
      defaultAddress: temporal.address,
    });
    expect(stack).toBe('server-already-running');
    expect(existsSync(join(stateDir, 'dev.json'))).toBe(false);
  });

  it('leaves a named server alone', async () => {
    const stack = await ensureEmbeddedStack('temporal.example.internal:7233', {
      stateDir,
      defaultAddress: temporal.address,
    });
    expect(stack).toBe('named-server');
  });

  it('says how to create the search attributes a running server lacks', () => {
    const message = new MissingSearchAttributesError('127.0.0.1:7233').message;
    expect(message).toMatch(/lacks sa-engine's search attributes/);
    expect(message).toContain('--name SaeRun --type Keyword');
    expect(message).toContain('--name SaeImagesDone --type Int');
  });
});
