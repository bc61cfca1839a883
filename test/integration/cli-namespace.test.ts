// `sa-engine namespace prepare` on a new namespace of the suite's Temporal server, as an operator
// runs it once per environment: --check names what is missing and exits 1, prepare registers it,
// and a second --check is satisfied.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SEARCH_ATTRIBUTES } from '../../infra/dev-stack.ts';
import { toolPath } from '../../infra/tools.ts';
import { cli } from '../helpers/cli.ts';
import { testStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const stack = testStack();

describe('sa-engine namespace prepare', () => {
  it("registers sa-engine's search attributes in a namespace that lacks them", async () => {
    const namespace = `prep-${randomUUID().slice(0, 8)}`;
    const address = stack.temporal.address;
    await promisify(execFile)(toolPath('temporal'), [
      ...['operator', 'namespace', 'create', '--namespace', namespace, '--address', address],
    ]);
    const prepare = (...flags: string[]) =>
      cli('namespace', 'prepare', '--address', address, '--namespace', namespace, ...flags);

    // A new namespace reaches the frontend's cache within seconds.
    let check = await prepare('--check');
    await waitFor('the new namespace', async () => {
      check = await prepare('--check');
      return check.code === 1;
    });
    const names = Object.keys(SEARCH_ATTRIBUTES);
    expect(check.stdout.trim()).toBe(`Namespace ${namespace} lacks: ${names.join(', ')}`);

    const registered = await prepare();
    expect(registered.code, registered.stderr).toBe(0);
    expect(registered.stdout.trim()).toBe(`Registered in ${namespace}: ${names.join(', ')}`);

    const again = await prepare('--check');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout.trim()).toBe(
      `Namespace ${namespace} has sa-engine's ${names.length} search attributes.`,
    );
  });
});
