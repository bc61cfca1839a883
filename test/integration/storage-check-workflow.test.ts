// The platform's end-to-end proof: a real workflow on the real Temporal dev server whose activity
// writes an object to the real S3 server, reads it back and deletes it.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStorageCheckActivities } from '../../activities/storage-check.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { createWorker } from '../../workers/create-worker.ts';
import { spawnWorkerProcess } from '../helpers/processes.ts';
import { testStack } from '../helpers/stack.ts';

const stack = testStack();
const s3Options = {
  s3: {
    endpoint: stack.s3.endpoint,
    region: stack.s3.region,
    accessKeyId: stack.s3.accessKeyId,
    secretAccessKey: stack.s3.secretAccessKey,
    forcePathStyle: true,
  },
};

describe('storageCheck workflow on the real dev stack', () => {
  let workerConnection: NativeConnection;
  let clientConnection: Connection;
  let client: Client;

  beforeAll(async () => {
    workerConnection = await NativeConnection.connect({ address: stack.temporal.address });
    clientConnection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection: clientConnection, namespace: stack.temporal.namespace });
  });

  afterAll(async () => {
    await clientConnection?.close();
    await workerConnection?.close();
  });

  it('writes, reads back and deletes a probe object in S3 from an activity', async () => {
    const taskQueue = `test-storage-check-${randomUUID()}`;
    const storeUri = `s3://${stack.s3.bucket}/storage-check-${randomUUID()}`;
    const worker = await createWorker({
      connection: workerConnection,
      namespace: stack.temporal.namespace,
      taskQueue,
      activities: createStorageCheckActivities(s3Options),
      runWorkflows: true,
    });

    const workflowId = `storage-check-${randomUUID()}`;
    const result = await worker.runUntil(
      client.workflow.execute('storageCheck', {
        taskQueue,
        workflowId,
        args: [{ storeUri, taskQueues: [taskQueue] }],
      }),
    );

    expect(result.probes).toHaveLength(1);
    const probe = result.probes[0]!;
    expect(probe.bytes).toBe(64 * 1024);
    expect(probe.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(probe.uri).toBe(`${storeUri}/_sa-engine/probes/${taskQueue}.bin`);
    // The probe cleaned up after itself, and the workflow really ran on the server.
    expect(await openObjectStore(storeUri, s3Options).exists(`_sa-engine/probes/${taskQueue}.bin`)).toBe(
      false,
    );
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    const completed = history.events?.filter((e) => e.activityTaskCompletedEventAttributes) ?? [];
    expect(completed).toHaveLength(1);
  });

  it("a worker started elsewhere with --config reaches the run's storage from the config's storage.s3", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'sae-remote-worker-'));
    const configFile = join(stateDir, 'run.yaml');
    const output = `s3://${stack.s3.bucket}/remote-${randomUUID().slice(0, 8)}`;
    writeFileSync(
      configFile,
      `run: remote\nimages: { prefix: ${output}/images }\noutput: ${output}\nmodels: { sam: ./model }\n` +
        `storage: { s3: { endpoint: "${stack.s3.endpoint}", region: ${stack.s3.region} } }\n`,
    );
    // Only the credentials come from the environment; the endpoint is in the config alone.
    const remoteQueue = `test-remote-worker-${randomUUID()}`;
    const remote = await spawnWorkerProcess(stack, {
      queues: [remoteQueue],
      logFile: join(stateDir, 'worker.log'),
      stateDir,
      configFile,
    });
    const taskQueue = `test-storage-check-${randomUUID()}`;
    const worker = await createWorker({
      connection: workerConnection,
      namespace: stack.temporal.namespace,
      taskQueue,
      activities: {},
      runWorkflows: true,
    });
    try {
      const result = await worker.runUntil(
        client.workflow.execute('storageCheck', {
          taskQueue,
          workflowId: `storage-check-${randomUUID()}`,
          args: [{ storeUri: output, taskQueues: [remoteQueue] }],
        }),
      );
      expect(result.probes.map((p: { uri: string }) => p.uri)).toEqual([
        `${output}/_sa-engine/probes/${remoteQueue}.bin`,
      ]);
    } finally {
      await remote.kill();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
