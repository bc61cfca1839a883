// `npm run bench:scale`: the fan-out at dataset scale. A dry run (list, shard manifests, shard
// workflows reading every image header through S3) over N image keys in a real S3 server.
//
//   npm run bench:scale -- [--images 100000] [--shard-size 1000] [--concurrent-shards 8]
//
// The keys are seeded by writing files straight into the server's posix data folder (uploading
// 100k objects through the API would only benchmark the seeding); everything after that goes
// through S3 and Temporal. The last line is `scale: N images, X images/s, max history events E`.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import sharp from 'sharp';
import { runDryRun } from '../client/runs.ts';
import { startDevStack, stopProcess } from '../infra/dev-stack.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { createSegmenterFactory } from '../lib/stage3/segmenter.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { startWorkers } from '../workers/run-workers.ts';
import { REFERENCE_PACKAGE } from './amg-common.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '100000' },
    'shard-size': { type: 'string', default: '1000' },
    'concurrent-shards': { type: 'string', default: '8' },
  },
});
const imageCount = Number(values.images);
Runtime.install({ logger: new DefaultLogger('WARN') });

const dir = mkdtempSync(join(tmpdir(), 'sae-scale-'));
const stateDir = join(dir, 'stack');
const stack = await startDevStack({ stateDir, detached: false, s3: { bucket: 'scale' } });
try {
  const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#5a7' } })
    .png()
    .toBuffer();
  const bucketDir = join(stateDir, 's3', 'data', 'scale');
  for (let i = 0; i < imageCount; i++) {
    const folder = join(bucketDir, 'images', String(Math.floor(i / 1000)).padStart(4, '0'));
    if (i % 1000 === 0) mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, `${String(i).padStart(7, '0')}.png`), png);
  }
  console.log(`seeded ${imageCount} image keys into s3://scale/images/`);

  const { endpoint, region, accessKeyId, secretAccessKey } = stack.info.s3;
  const storeOptions = { s3: { endpoint, region, accessKeyId, secretAccessKey, forcePathStyle: true } };
  const workers = await startWorkers({
    address: stack.info.temporal.address,
    namespace: stack.info.temporal.namespace,
    queues: [TASK_QUEUES.orchestration],
    concurrency: { [TASK_QUEUES.orchestration]: 32 },
    storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions }),
  });
  const connection = await Connection.connect({ address: stack.info.temporal.address });
  const client = new Client({ connection, namespace: stack.info.temporal.namespace });
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
  const started = performance.now();
  const result = await runDryRun(client, config);
  const seconds = (performance.now() - started) / 1000;

  let maxEvents = 0;
  let workflows = 0;
  for await (const wf of client.workflow.list()) {
    const history = await client.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    maxEvents = Math.max(maxEvents, history.events?.length ?? 0);
    workflows += 1;
  }
  await workers.shutdown();
  await connection.close();
  console.log(
    `dry run: ${result.images} images (${result.imagesFailed} unreadable) in ${result.shards} shards, ${seconds.toFixed(1)} s`,
  );
  console.log(`${workflows} workflow executions inspected`);
  console.log(
    `scale: ${result.images} images, ${(result.images / seconds).toFixed(0)} images/s, max history events ${maxEvents}`,
  );
} finally {
  await Promise.all(stack.processes.map((p) => stopProcess(p.pid)));
  rmSync(dir, { recursive: true, force: true });
}
