// The worker pools of the embedded default (`run --workers`, `demo`, `audit --workers`): the
// orchestration pool in this process, and the inference pool in a child `sa-engine worker`
// process. onnxruntime-node runs a model synchronously on the calling thread, so an in-process
// inference pool would freeze this process's event loop for seconds at a time and with it every
// workflow task and heartbeat; a separate process keeps them flowing, as separate pools do at scale.
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createSegmenterFactory } from '../lib/segmenter.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { startWorkers } from '../workers/run-workers.ts';
import type { Endpoints } from './endpoints.ts';

const CLI = resolve(import.meta.dirname, '../bin/sa-engine.mjs');

export interface LocalWorkers {
  shutdown(): Promise<void>;
}

export async function startLocalWorkers(endpoints: Endpoints): Promise<LocalWorkers> {
  const inference = await spawnInferenceWorker(endpoints);
  const orchestration = await startWorkers({
    address: endpoints.address,
    namespace: endpoints.namespace,
    queues: [TASK_QUEUES.orchestration],
    storeOptions: endpoints.storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions: endpoints.storeOptions }),
  }).catch(async (err: unknown) => {
    await stopChild(inference);
    throw err;
  });
  return {
    async shutdown() {
      await orchestration.shutdown();
      await stopChild(inference);
    },
  };
}

/** `sa-engine worker --queues sae-gpu-inference`, resolved once it polls its queue. */
async function spawnInferenceWorker(endpoints: Endpoints): Promise<ChildProcess> {
  const args = [CLI, 'worker', '--queues', TASK_QUEUES.inference, '--address', endpoints.address, '--namespace', endpoints.namespace];
  const child = spawn(process.execPath, args, { env: { ...process.env, ...storageEnv(endpoints) }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolveReady, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Workers running on')) resolveReady();
    });
    child.once('exit', (code) => reject(new Error(`the inference worker exited (${code}) before it was ready:\n${output}`)));
  });
  child.stdout!.resume(); // keep draining its output
  return child;
}

/** The S3 settings this process resolved, passed the standard way. */
function storageEnv(endpoints: Endpoints): NodeJS.ProcessEnv {
  const s3 = endpoints.storeOptions.s3 ?? {};
  const env: NodeJS.ProcessEnv = {};
  if (s3.endpoint) env.SAE_S3_ENDPOINT = s3.endpoint;
  if (s3.region) env.AWS_REGION = s3.region;
  if (s3.accessKeyId) env.AWS_ACCESS_KEY_ID = s3.accessKeyId;
  if (s3.secretAccessKey) env.AWS_SECRET_ACCESS_KEY = s3.secretAccessKey;
  return env;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM'); // the worker finishes its current activity's heartbeat and exits
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}
