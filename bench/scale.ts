// `npm run bench:scale`: the fan-out at dataset scale. A dry run (list, shard manifests, shard
// workflows reading every image header through S3) over N image keys in a real S3 server.
//
//   npm run bench:scale -- [--images 100000] [--shard-size 1000] [--concurrent-shards 8]
//                          [--worker-processes 2]
//   npm run bench:scale -- --segment [--images 24] [--shard-size 8] [--points-per-side 4]
//
// `--segment` runs a real (small) dataset run instead: stage 3 segmenting synthetic images with
// the reference model, then the dataset build and the engine report, with the workers serving the
// inference queue too. It is for counting what a real run costs per image, not for speed.
//
// Both print what the run cost: Temporal Cloud actions (the server's own `action` counter, and a
// count from the workflow histories by the event types Temporal Cloud bills) and history events,
// and S3 requests by operation and key pattern (versitygw's access log), in total and per image
// (bench/scale-costs.ts). docs/scale.md turns them into a capacity model.
//
// The keys are seeded by writing files straight into the server's posix data folder (uploading
// 1M objects through the API would only benchmark the seeding); everything after that goes
// through S3 and Temporal. The orchestration pool runs as `sa-engine worker` processes, as it
// would on a cluster (one per core by default): their peak resident memory (the kernel's VmHWM)
// is printed when 100,000 images are done and at the end, so a memory that grows with N shows.
// The last line is `scale: N images, X images/s, max history events E, peak RSS M MB, A actions/image,
// R S3 requests/image`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import sharp from 'sharp';
import { runDryRun, startRun } from '../client/runs.ts';
import { startDevStack, stopProcess, type DevStack } from '../infra/dev-stack.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { generateSynthDataset } from '../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { stage3ProgressQuery } from '../workflows/stage3.ts';
import { dryRunWorkflowId } from '../workflows/dry-run.ts';
import { stage3WorkflowId } from '../workflows/dataset-run.ts';
import { REFERENCE_PACKAGE } from './amg-common.ts';
import {
  addCounts,
  countsSince,
  findMetricsUrl,
  historyActions,
  parseAccessLog,
  readActionMetric,
  requestScope,
  summariseS3,
  sumCounts,
} from './scale-costs.ts';

const CLI = resolve(import.meta.dirname, '../bin/sa-engine.mjs');

const { values } = parseArgs({
  options: {
    images: { type: 'string' },
    'shard-size': { type: 'string' },
    'concurrent-shards': { type: 'string', default: '8' },
    'worker-processes': { type: 'string', default: String(cpus().length) },
    segment: { type: 'boolean', default: false },
    'points-per-side': { type: 'string', default: '4' },
  },
});
const segment = values.segment;
const imageCount = Number(values.images ?? (segment ? 24 : 100_000));
const shardSize = Number(values['shard-size'] ?? (segment ? 8 : 1000));

const dir = mkdtempSync(join(tmpdir(), 'sae-scale-'));
const stateDir = join(dir, 'stack');
// versitygw reads its --access-log from this variable; the dev stack's servers inherit our env.
const accessLog = join(dir, 's3-access.log');
process.env.VGW_ACCESS_LOG = accessLog;
const stack = await startDevStack({ stateDir, detached: false, s3: { bucket: 'scale' } }).finally(() => {
  delete process.env.VGW_ACCESS_LOG;
});
const workers: ChildProcess[] = [];
try {
  const imagesFolder = join(stateDir, 's3', 'data', 'scale', 'images');
  if (segment) await seedSyntheticImages(imagesFolder, imageCount);
  else await seedImageKeys(imagesFolder, imageCount);
  console.log(`seeded ${imageCount} ${segment ? 'synthetic images' : 'image keys'} into s3://scale/images/`);

  const queues = segment ? [TASK_QUEUES.orchestration, TASK_QUEUES.inference] : [TASK_QUEUES.orchestration];
  for (let i = 0; i < Number(values['worker-processes']); i++) workers.push(await spawnWorker(stack, queues));
  const connection = await Connection.connect({ address: stack.info.temporal.address });
  const { namespace } = stack.info.temporal;
  const client = new Client({ connection, namespace });
  const { endpoint, region } = stack.info.s3;
  const config = createRunConfigSchema().parse({
    run: 'scale',
    images: { prefix: 's3://scale/images/' },
    output: 's3://scale/out/',
    storage: { s3: { endpoint, region } },
    models: { sam: segment ? pathToFileURL(REFERENCE_PACKAGE).href : REFERENCE_PACKAGE },
    stage3: {
      shardSize,
      maxConcurrentShards: Number(values['concurrent-shards']),
      // The reference model's own calibrated filter thresholds: the official ones keep few of its masks.
      ...(segment ? { pointsPerSide: Number(values['points-per-side']), thresholds: 'model' } : {}),
    },
  });

  const temporalPid = stack.processes.find((p) => p.name === 'temporal')?.pid;
  const metricsUrl = temporalPid === undefined ? undefined : await findMetricsUrl(temporalPid);
  const actionsBefore = metricsUrl ? await readActionMetric(metricsUrl, namespace) : {};
  // The bucket's creation is no part of the run. (No log: a versitygw that ignores VGW_ACCESS_LOG.)
  const logOffset = existsSync(accessLog) ? statSync(accessLog).size : undefined;

  const stage3Id = segment ? stage3WorkflowId(config.run) : `${dryRunWorkflowId(config.run)}/stage3`;
  const memory = watchMemory(client, stage3Id, workers);
  const started = performance.now();
  const result = await (
    segment
      ? startRun(client, config)
          .then((handle) => handle.result())
          .then((r) => r.stage3!)
      : runDryRun(client, config)
  ).finally(() => memory.stop());
  const seconds = (performance.now() - started) / 1000;

  // Every execution the run made (each run of a continued-as-new chain is one), with its history.
  const byType = new Map<
    string,
    { executions: number; events: number; maxEvents: number; actions: number }
  >();
  const fromHistories: Record<string, number> = {};
  let maxEvents = 0;
  let executions = 0;
  for await (const wf of client.workflow.list()) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    const events = history.events ?? [];
    const actions = historyActions(events);
    addCounts(fromHistories, actions);
    const t = byType.get(wf.type) ?? { executions: 0, events: 0, maxEvents: 0, actions: 0 };
    t.executions += 1;
    t.events += events.length;
    t.maxEvents = Math.max(t.maxEvents, events.length);
    t.actions += sumCounts(actions);
    byType.set(wf.type, t);
    maxEvents = Math.max(maxEvents, events.length);
    executions += 1;
  }
  // Read after the histories, and a moment later still: the server counts a workflow task's
  // commands after it answered it, so the last ones can trail the run's result.
  await new Promise((r) => setTimeout(r, 2000));
  const actionsAfter = metricsUrl ? await readActionMetric(metricsUrl, namespace) : {};
  const peakMb = memory.peakMb();
  await connection.close();
  const log = logOffset === undefined ? '' : readFileSync(accessLog).subarray(logOffset).toString('utf8');
  const s3 = summariseS3(parseAccessLog(log));

  const n = result.images;
  const perImage = (x: number) => (x / n).toFixed(x / n < 0.1 ? 4 : 2);
  console.log(
    `${segment ? 'segment run' : 'dry run'}: ${n} images (${result.imagesFailed} ` +
      `${segment ? 'failed' : 'unreadable'}) in ${result.shards} shards of ${shardSize}, ` +
      `${seconds.toFixed(1)} s, ${workers.length} worker processes (${queues.join(', ')})` +
      (segment ? `, ${result.masks} masks` : ''),
  );
  console.log(`${executions} workflow executions inspected`);
  for (const [images, mb] of memory.checkpoints)
    console.log(
      `peak RSS of a worker once ${images.toLocaleString('en')} images were done: ${mb.toFixed(0)} MB`,
    );

  // Temporal: the server's meter first; the bench's own progress polls are no cost of the run.
  const metered = countsSince(actionsAfter, actionsBefore);
  const benchQueries = metered.grpc_QueryWorkflow ?? 0;
  delete metered.grpc_QueryWorkflow;
  const meteredTotal = sumCounts(metered);
  if (metricsUrl) {
    console.log(
      `Temporal actions, server's action counter (namespace ${namespace}): ${meteredTotal} ` +
        `(${perImage(meteredTotal)} per image); left out: ${benchQueries} progress queries made by this bench`,
    );
    for (const [kind, count] of sorted(metered))
      console.log(`  ${kind.padEnd(48)} ${String(count).padStart(9)}  ${perImage(count).padStart(8)}/image`);
  } else console.log("Temporal actions, server's action counter: /metrics not found");
  const historyTotal = sumCounts(fromHistories);
  console.log(
    `Temporal actions, from the histories by Temporal Cloud's event mapping (no heartbeats or queries): ` +
      `${historyTotal} (${perImage(historyTotal)} per image)`,
  );
  for (const [kind, count] of sorted(fromHistories))
    console.log(`  ${kind.padEnd(48)} ${String(count).padStart(9)}  ${perImage(count).padStart(8)}/image`);
  console.log('history events by workflow type: executions, events, max events in one, actions');
  for (const [type, t] of [...byType].sort((a, b) => b[1].events - a[1].events))
    console.log(
      `  ${type.padEnd(24)} ${String(t.executions).padStart(6)} ${String(t.events).padStart(9)} ` +
        `${String(t.maxEvents).padStart(7)} ${String(t.actions).padStart(9)}`,
    );
  const events = [...byType.values()].reduce((a, t) => a + t.events, 0);
  console.log(`history events in total: ${events} (${perImage(events)} per image), max ${maxEvents}`);

  // S3: every request any process made during the run.
  if (logOffset === undefined) console.log('S3 requests: versitygw wrote no access log, none counted');
  console.log(
    `S3 requests (versitygw access log): ${s3.requests} (${perImage(s3.requests)} per image), ` +
      `${s3.errors} answered with an error status (a HEAD's 404 included)`,
  );
  for (const [op, count] of sorted(s3.byOp))
    console.log(`  ${op.padEnd(48)} ${String(count).padStart(9)}  ${perImage(count).padStart(8)}/image`);
  console.log('S3 requests by operation and key pattern (digits as #):');
  for (const [pattern, count] of sorted(s3.byPattern))
    console.log(`  ${pattern.padEnd(64)} ${String(count).padStart(9)}  ${perImage(count).padStart(8)}/image`);
  const scopes: Record<'image' | 'shard' | 'run', Record<string, number>> = { image: {}, shard: {}, run: {} };
  for (const [pattern, count] of Object.entries(s3.byPattern)) {
    const op = pattern.slice(0, pattern.indexOf(' '));
    const into = scopes[requestScope(pattern, 'images/')];
    into[op] = (into[op] ?? 0) + count;
  }
  const describeOps = (counts: Record<string, number>, per: number) =>
    sorted(counts)
      .map(([op, c]) => `${op} ${(c / per).toFixed(2)}`)
      .join(', ') || 'none';
  console.log(
    `S3 requests by what they grow with (from the key): per image ${describeOps(scopes.image, n)}; ` +
      `per shard ${describeOps(scopes.shard, result.shards)}; per run ${describeOps(scopes.run, 1)}`,
  );
  const rate = (x: number) => (x / Math.max(1, s3.seconds)).toFixed(0);
  const writes = (s3.byOp.PUT ?? 0) + (s3.byOp.DELETE ?? 0);
  console.log(
    `S3 request rate over ${s3.seconds} s: PUT/DELETE ${rate(writes)}/s (busiest second ` +
      `${s3.peakPerSecond.write}), GET/HEAD/LIST ${rate(s3.requests - writes)}/s (busiest second ${s3.peakPerSecond.read})`,
  );
  console.log(
    `scale: ${n} images, ${(n / seconds).toFixed(segment ? 2 : 0)} images/s, ` +
      `max history events ${maxEvents}, peak RSS ${peakMb.toFixed(0)} MB, ` +
      `${perImage(metricsUrl ? meteredTotal : historyTotal)} actions/image, ${perImage(s3.requests)} S3 requests/image`,
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

/** Synthetic scenes (what the integration tests segment), as files in the server's data folder. */
async function seedSyntheticImages(folder: string, count: number): Promise<void> {
  await generateSynthDataset({
    images: count,
    seed: 11,
    write: async (key, bytes) => {
      if (!key.startsWith('images/')) return;
      const path = join(folder, key.slice('images/'.length));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, bytes);
    },
  });
}

/** Counts, biggest first. */
function sorted(counts: Record<string, number>): [string, number][] {
  return Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** `sa-engine worker --queues ...` against the bench's stack, once it polls. */
async function spawnWorker(stack: DevStack, queues: string[]): Promise<ChildProcess> {
  const { temporal, s3 } = stack.info;
  const child = spawn(
    process.execPath,
    [
      CLI,
      'worker',
      '--queues',
      queues.join(','),
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
function watchMemory(client: Client, stage3Id: string, processes: ChildProcess[]) {
  const checkpoints: [number, number][] = [];
  const peakMb = () => Math.max(...processes.map((p) => peakRssMb(p.pid!)));
  let next = 100_000;
  let images = 0;
  const note = () => {
    for (; images >= next; next *= 10) checkpoints.push([next, peakMb()]);
  };
  const timer = setInterval(() => {
    client.workflow
      .getHandle(stage3Id)
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
