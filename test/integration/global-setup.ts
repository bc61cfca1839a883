// Starts one real dev stack (Temporal dev server + versitygw S3 server) on free loopback ports for
// the whole integration suite and stops it afterwards. Set SAE_TEST_TEMPORAL_ADDRESS and
// SAE_TEST_S3_ENDPOINT (plus SAE_TEST_S3_BUCKET / _ACCESS_KEY / _SECRET_KEY) to use running servers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  DEV_S3_CREDENTIALS,
  ensureBucket,
  startDevStack,
  stopProcess,
  type DevStack,
} from '../../infra/dev-stack.ts';
import type { StackInfo } from '../../infra/stack-info.ts';

function stackFromEnv(): StackInfo | undefined {
  const address = process.env.SAE_TEST_TEMPORAL_ADDRESS;
  const endpoint = process.env.SAE_TEST_S3_ENDPOINT;
  if (!address || !endpoint) return undefined;
  return {
    temporal: { address, namespace: process.env.SAE_TEST_TEMPORAL_NAMESPACE ?? 'default', uiUrl: '' },
    s3: {
      endpoint,
      region: process.env.SAE_TEST_S3_REGION ?? 'us-east-1',
      bucket: process.env.SAE_TEST_S3_BUCKET ?? 'sa-engine-test',
      accessKeyId: process.env.SAE_TEST_S3_ACCESS_KEY ?? DEV_S3_CREDENTIALS.accessKeyId,
      secretAccessKey: process.env.SAE_TEST_S3_SECRET_KEY ?? DEV_S3_CREDENTIALS.secretAccessKey,
    },
  };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = stackFromEnv();
  if (given) {
    await ensureBucket(given.s3);
    project.provide('stack', given);
    console.log(
      `[integration] using given stack: temporal ${given.temporal.address}, s3 ${given.s3.endpoint}`,
    );
    return async () => {};
  }

  const stateDir = mkdtempSync(join(tmpdir(), 'sae-test-stack-'));
  const stack: DevStack = await startDevStack({
    stateDir,
    detached: false,
    s3: { bucket: 'sa-engine-test' },
  });
  project.provide('stack', stack.info);
  console.log(
    `[integration] started Temporal dev server at ${stack.info.temporal.address} (UI ${stack.info.temporal.uiUrl}) ` +
      `and S3 server (versitygw) at ${stack.info.s3.endpoint}, state in ${stateDir}`,
  );
  return async () => {
    await Promise.all(stack.processes.map((p) => stopProcess(p.pid)));
    rmSync(stateDir, { recursive: true, force: true });
    console.log('[integration] stopped the Temporal dev server and the S3 server');
  };
}
