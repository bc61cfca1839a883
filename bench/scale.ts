// `npm run bench:scale`: the fan-out at dataset scale. A dry run (list, shard manifests, shard
// workflows reading every image header through S3) over N image keys in a real S3 server.
//
//   npm run bench:scale -- [--images 100000] [--shard-size 1000] [--concurrent-shards 8]
//                          [--worker-processes 2]
//
// The keys are seeded by writing files straight into the server's posix data folder (uploading
// 1M objects through the API would only benchmark the seeding); everything after that goes
// through S3 and Temporal. The orchestration pool runs as `sa-engine worker` processes, as it
// would on a cluster (one per core by default): their peak resident memory (the kernel's VmHWM)
// is printed when 100,000 images are done and at the end, so a memory that grows with N shows.
// The last line is `scale: N images, X images/s, max history events E, peak RSS M MB`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import sharp from 'sharp';
import { runDryRun } from '../client/runs.ts';
import { startDevStack, stopProcess, type DevStack } from '../infra/dev-stack.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { stage3ProgressQuery } from '../workflows/stage3.ts';
import { dryRunWorkflowId } from '../workflows/dry-run.ts';
import { REFERENCE_PACKAGE } from './amg-common.ts';

const CLI = resolve(import.meta.dirname, '../bin/sa-engine.mjs');

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '100000' },
    'shard-size': { type: 'string', default: '1000' },
    'concurrent-shards': { type: 'string', default: '8' },
    'worker-processes': { type: 'string', default: String(cpus().length) },
  },
});
const imageCount = Number(values.images);

const dir = mkdtempSync(join(tmpdir(), 'sae-scale-'));
const stateDir = join(dir, 'stack');
const stack = await startDevStack({ stateDir, detached: false, s3: { bucket: 'scale' } });
const workers: ChildProcess[] = [];
try {
  await seedImageKeys(join(stateDir, 's3', 'data', 'scale', 'images'), imageCount);
  console.log(`seeded ${imageCount} image keys into s3://scale/images/`);

  for (let i = 0; i < Number(values['worker-processes']); i++) workers.push(await spawnWorker(stack));
  const connection = await Connection.connect({ address: stack.info.temporal.address });
  const client = new Client({ connection, namespace: stack.info.temporal.namespace });
  const { endpoint, region } = stack.info.s3;
  const config = createRunConfigSchema().parse({
    run: 'scale',
    images: { prefix: 's3://scale/images/' },
    output: 's3://scale/out/',
    storage: { s3: { endpoint, region } },
    models: { sam: REFERENCE_PACKAGE },
    stage3: {
      shardSize: Number(values['shard-size']),
      maxConcurrentShards: Number(values['concurrent-shards']),
    },
  });
  const memory = watchMemory(client, config.run, workers);
  const started = performance.now();
  const result = await runDryRun(client, config).finally(() => memory.stop());
  const seconds = (performance.now() - started) / 1000;

  let maxEvents = 0;
  let executions = 0;
  for await (const wf of client.workflow.list()) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    maxEvents = Math.max(maxEvents, history.events?.length ?? 0);
    executions += 1;
  }
  const peakMb = memory.peakMb();
  await connection.close();
  console.log(
    `dry run: ${result.images} images (${result.imagesFailed} unreadable) in ${result.shards} shards, ` +
      `${seconds.toFixed(1)} s, ${workers.length} orchestration worker processes`,
  );
  console.log(`${executions} workflow executions inspected`);
  for (const [images, mb] of memory.checkpoints)
    console.log(
      `peak RSS of a worker once ${images.toLocaleString('en')} images were done: ${mb.toFixed(0)} MB`,
    );
  console.log(
    `scale: ${result.images} images, ${(result.images / seconds).toFixed(0)} images/s, ` +
      `max history events ${maxEvents}, peak RSS ${peakMb.toFixed(0)} MB`,
  );
} finally {
  await Promise.all(workers.map((w) => stopWorker(w)));
  await Promise.all(stack.processes.map((p) => stopProcess(p.pid)));
  rmSync(dir, { recursive: true, force: true });
}

/** One small PNG under N keys, 1,000 to a folder. */
async function seedImageKeys(folder: string, count: number): Promise<void> {
  const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#5a7' } })
    .png()
    .toBuffer();
  for (let i = 0; i < count; i++) {
    const sub = join(folder, String(Math.floor(i / 1000)).padStart(4, '0'));
    if (i % 1000 === 0) mkdirSync(sub, { recursive: true });
    writeFileSync(join(sub, `${String(i).padStart(7, '0')}.png`), png);
  }
}

/** `sa-engine worker --queues sae-orchestration` against the bench's stack, once it polls. */
async function spawnWorker(stack: DevStack): Promise<ChildProcess> {
  const { temporal, s3 } = stack.info;
  const child = spawn(
    process.execPath,
    [
      CLI,
      'worker',
      '--queues',
      TASK_QUEUES.orchestration,
      '--concurrency',
      `${TASK_QUEUES.orchestration}=32`,
      '--address',
      temporal.address,
      '--namespace',
      temporal.namespace,
    ],
    {
      env: {
        ...process.env,
        SAE_S3_ENDPOINT: s3.endpoint,
        AWS_REGION: s3.region,
        AWS_ACCESS_KEY_ID: s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((ready, failed) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Workers running on')) ready();
    });
    child.once('exit', (code) =>
      failed(new Error(`worker exited (${code}) before it was ready:\n${output}`)),
    );
  });
  child.stdout!.resume();
  return child;
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Peak resident memory of a process so far, from the kernel (VmHWM), in MB. */
function peakRssMb(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb ?? 0) / 1024;
}

/**
 * Polls the dry run's progress every second and notes the workers' peak memory so far once
 * 100,000 images are done, then 1,000,000; `peakMb` reads it at the end.
 */
function watchMemory(client: Client, runId: string, processes: ChildProcess[]) {
  const checkpoints: [number, number][] = [];
  const peakMb = () => Math.max(...processes.map((p) => peakRssMb(p.pid!)));
  let next = 100_000;
  let images = 0;
  const note = () => {
    for (; images >= next; next *= 10) checkpoints.push([next, peakMb()]);
  };
  const timer = setInterval(() => {
    client.workflow
      .getHandle(`${dryRunWorkflowId(runId)}/stage3`)
      .query(stage3ProgressQuery)
      .then((p) => {
        images = p.imagesDone + p.imagesFailed;
        note();
      })
      .catch(() => undefined); // not started yet, or between continue-as-new runs
  }, 1000);
  return {
    checkpoints,
    peakMb,
    stop: () => {
      clearInterval(timer);
      images = Math.max(images, imageCount); // the run is done: every image counts
      note();
    },
  };
}
