// The embedded default's worker pools (`run --workers`, `demo`): the CLI supervises its child
// inference worker, so a worker killed mid-run (OOM, native crash, SIGKILL) is said and restarted,
// and the run finishes instead of waiting on its queue with no word.
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRun } from '../../client/runs.ts';
import type { Endpoints } from '../../cli/endpoints.ts';
import { startLocalWorkers, unlessWorkersFail, type LocalWorkers } from '../../cli/local-workers.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { readShardResult } from '../../lib/stage3/shard-runner.ts';
import { testStack } from '../helpers/stack.ts';
import { stage3Config, storeOptionsFor, writeStage3Images } from '../helpers/stage3-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const stack = testStack();
const endpoints: Endpoints = {
  address: stack.temporal.address,
  namespace: stack.temporal.namespace,
  storeOptions: storeOptionsFor(stack),
};

describe('the CLI supervises its local inference worker', () => {
  let connection: Connection;
  let client: Client;
  let workers: LocalWorkers | undefined;

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
  });

  afterAll(async () => {
    await workers?.shutdown();
    await connection?.close();
  });

  it('restarts a worker killed mid-run; the run finishes with every image exactly once', async () => {
    const said: string[] = [];
    workers = await startLocalWorkers(endpoints, { backoffMs: [200], log: (line) => said.push(line) });
    const fixture = await writeStage3Images(stack, 4);
    // One image per batch and a short heartbeat timeout: the killed shard is retried in seconds.
    const config = stage3Config(fixture, stack, { shardSize: 4, batchImages: 1, heartbeatTimeout: '8s' });
    const handle = await startRun(client, config);
    await waitFor('the first image of the shard', () => fixture.out.exists(runLayout.masks(config.run, 0)));

    const first = workers.inferencePid()!;
    process.kill(first, 'SIGKILL');
    const result = await unlessWorkersFail(handle.result(), workers);

    expect(result.stage3).toMatchObject({ images: 4, imagesDone: 4, imagesFailed: 0 });
    const lines = (await readShardResult(fixture.out, config.run, 0))!;
    expect(lines.map((l) => l.id).sort()).toEqual([0, 1, 2, 3]);
    expect(said.join('\n')).toMatch(
      new RegExp(
        `inference worker \\(pid ${first}\\) was killed \\(SIGKILL.*restarting it in 0.2 s \\(restart 1 of 5\\)`,
      ),
    );
    expect(workers.inferencePid()).toBeGreaterThan(0);
    expect(workers.inferencePid()).not.toBe(first);
    await workers.shutdown();
    workers = undefined;
  });

  it('stops with what died and what to do once the worker keeps dying', async () => {
    workers = await startLocalWorkers(endpoints, { maxRestarts: 1, backoffMs: [100], log: () => {} });
    const first = workers.inferencePid()!;
    process.kill(first, 'SIGKILL');
    await waitFor('the restarted worker', () => (workers!.inferencePid() ?? first) !== first, 60_000);
    process.kill(workers.inferencePid()!, 'SIGKILL');

    await expect(workers.failed).rejects.toThrow(
      /was killed \(SIGKILL.*death number 2 in this command, so it is not restarted again.*sa-engine worker --queues sae-gpu-inference/,
    );
    await expect(unlessWorkersFail(new Promise(() => {}), workers)).rejects.toThrow(/not restarted again/);
  });
});
