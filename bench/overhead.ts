// `npm run bench:overhead`: what Temporal orchestration costs. The same images go through a real
// `sa-engine run` (planning, shard workflows, heartbeats, result manifests, statistics) and through
// a plain in-process loop over the same segmenter; both start cold and write the same SA-1B files.
//
//   npm run bench:overhead -- [--images N] [--points-per-side N]
//
// The last line is `stage3 overhead ratio (temporal/direct): X.XX`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { startRun } from '../client/runs.ts';
import { startDevStack, stopProcess } from '../infra/dev-stack.ts';
import { openObjectStore } from '../lib/object-store.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { runLayout } from '../lib/run-layout.ts';
import { createSegmenterFactory } from '../lib/stage3/segmenter.ts';
import { generateSynthDataset } from '../lib/synth/dataset.ts';
import { startLocalWorkers } from '../cli/local-workers.ts';
import { REFERENCE_PACKAGE } from './amg-common.ts';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '12' },
    'points-per-side': { type: 'string', default: '16' },
  },
});
const imageCount = Number(values.images);
const pointsPerSide = Number(values['points-per-side']);

const dir = mkdtempSync(join(tmpdir(), 'sae-overhead-'));
const stack = await startDevStack({ stateDir: join(dir, 'stack'), detached: false });
try {
  const imagesUri = pathToFileURL(join(dir, 'images')).href;
  const images = openObjectStore(imagesUri);
  await generateSynthDataset({
    images: imageCount,
    seed: 31337,
    write: (key, bytes) =>
      key.startsWith('images/') ? images.put(key.slice(7), Buffer.from(bytes)) : Promise.resolve(),
  });
  const keys: string[] = [];
  for await (const key of images.listKeys('')) keys.push(key);
  const settings = { pointsPerSide };

  // Direct: one process, one loop, same segmenter and same outputs.
  let started = performance.now();
  const direct = await createSegmenterFactory()(pathToFileURL(REFERENCE_PACKAGE).href, settings);
  const directOut = openObjectStore(pathToFileURL(join(dir, 'direct')).href);
  for (const [id, key] of keys.entries()) {
    const result = await direct.segment(await images.get(key), { id, fileName: key });
    await directOut.put(runLayout.masks('direct', id), JSON.stringify(result.sa1b));
  }
  const directSeconds = (performance.now() - started) / 1000;

  // Temporal: a real run with the embedded default's workers, as `sa-engine run --workers` starts them.
  started = performance.now();
  const workers = await startLocalWorkers({
    address: stack.info.temporal.address,
    namespace: stack.info.temporal.namespace,
    storeOptions: {},
  });
  const connection = await Connection.connect({ address: stack.info.temporal.address });
  const client = new Client({ connection, namespace: stack.info.temporal.namespace });
  const config = createRunConfigSchema().parse({
    run: 'overhead',
    images: { prefix: imagesUri },
    output: pathToFileURL(join(dir, 'temporal')).href,
    models: { sam: pathToFileURL(REFERENCE_PACKAGE).href },
    stage3: { ...settings, shardSize: 4, maxConcurrentShards: 2, batchImages: 2 },
  });
  const result = await (await startRun(client, config)).result();
  const temporalSeconds = (performance.now() - started) / 1000;
  await workers.shutdown();
  await connection.close();

  console.log(`${imageCount} images, ${pointsPerSide}×${pointsPerSide} grid, ${result.stage3?.masks} masks`);
  console.log(`direct loop:   ${directSeconds.toFixed(1)} s`);
  console.log(
    `sa-engine run: ${temporalSeconds.toFixed(1)} s (shards ${result.stage3?.shards}, statistics included)`,
  );
  console.log(`stage3 overhead ratio (temporal/direct): ${(temporalSeconds / directSeconds).toFixed(2)}`);
} finally {
  await Promise.all(stack.processes.map((p) => stopProcess(p.pid)));
  rmSync(dir, { recursive: true, force: true });
}
