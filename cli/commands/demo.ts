// `sa-engine demo`: the embedded default end to end. Starts the local dev stack if none runs,
// writes a small synthetic image set to a local folder, runs the fully automatic stage and the
// dataset statistics with the reference model through Temporal, and says where everything is.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { describeStack, ensureDevStack } from '../../infra/dev-control.ts';
import { defaultStateDir } from '../../infra/dev-state.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { decompressRle, rleArea } from '../../lib/rle.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';
import { connectClient, resolveEndpoints, workflowUrl } from '../endpoints.ts';
import { startLocalWorkers } from '../local-workers.ts';
import { follow, startRun } from './run.ts';

/** The reference model committed with the project (trained by trainer/, see its model card). */
export const REFERENCE_MODEL_DIR = resolve(import.meta.dirname, '../../models/sae-ref');

interface DemoFlags {
  images: string;
  seed: string;
  pointsPerSide: string;
}

export function registerDemoCommands(program: Command): void {
  program
    .command('demo')
    .description(
      'Run the fully automatic stage on a small synthetic image set, on the embedded default stack.',
    )
    .option('--images <n>', 'synthetic images to segment', '12')
    .option('--seed <s>', 'seed of the synthetic images', '2026')
    // 16×16 keeps the demo to a few minutes on 2 CPU cores; the paper's grid is 32×32.
    .option('--points-per-side <n>', 'automatic mask generator grid (paper: 32)', '16')
    .action(async (flags: DemoFlags) => {
      const stateDir = defaultStateDir();
      const { state, reused } = await ensureDevStack({ stateDir });
      console.log(reused ? 'Using the running dev stack:' : 'Started the dev stack:');
      console.log(describeStack(state).join('\n'));

      const demoDir = join(stateDir, 'demo');
      const imagesDir = join(demoDir, `images-seed${flags.seed}-n${flags.images}`);
      await writeDemoImages(imagesDir, Number(flags.images), Number(flags.seed));

      const config = demoConfig(imagesDir, join(demoDir, 'out'), Number(flags.pointsPerSide));
      const endpoints = resolveEndpoints({}, config);
      const client = await connectClient(endpoints);
      const workers = await startLocalWorkers(endpoints);
      try {
        const handle = await startRun(client, config);
        console.log(
          `Run ${config.run} started; follow it in the Temporal UI: ${workflowUrl(endpoints, config.run) ?? endpoints.address}`,
        );
        const result = await follow(client, handle);
        await printSummary(config, result.stage3?.imagesDone ?? 0);
      } finally {
        await workers.shutdown();
        await client.connection.close();
      }
    });
}

async function writeDemoImages(dir: string, images: number, seed: number): Promise<void> {
  if (existsSync(join(dir, 'annotations.json'))) return; // same seed, same bytes: reuse
  const store = openObjectStore(pathToFileURL(dir).href);
  console.log(`Writing ${images} synthetic images to ${dir} ...`);
  await generateSynthDataset({ images, seed, write: (key, bytes) => store.put(key, Buffer.from(bytes)) });
}

function demoConfig(imagesDir: string, outDir: string, pointsPerSide: number): RunConfig {
  if (!existsSync(join(REFERENCE_MODEL_DIR, 'model.json'))) {
    throw new Error(
      `the reference model is missing at ${REFERENCE_MODEL_DIR} (model.json); is the clone complete?`,
    );
  }
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return createRunConfigSchema().parse({
    run: `demo-${stamp}`,
    images: { prefix: pathToFileURL(join(imagesDir, 'images')).href },
    output: pathToFileURL(outDir).href,
    models: { sam: pathToFileURL(REFERENCE_MODEL_DIR).href },
    stage3: { pointsPerSide, shardSize: 8, maxConcurrentShards: 2, batchImages: 4 },
    release: { enabled: false },
  });
}

async function printSummary(config: RunConfig, imagesDone: number): Promise<void> {
  const out = openObjectStore(config.output);
  const stats = JSON.parse((await out.get(runLayout.datasetStats(config.run))).toString('utf8')) as {
    images: number;
    masks: number;
  };
  // Decode one mask file as a user would, to show the output is real COCO RLE.
  const first = JSON.parse((await out.get(runLayout.masks(config.run, 0))).toString('utf8')) as {
    annotations: { segmentation: { size: [number, number]; counts: string }; area: number }[];
  };
  const decodedOk = first.annotations.every((a) => rleArea(decompressRle(a.segmentation)) === a.area);
  console.log(
    `\nDone: ${imagesDone} images, ${stats.masks} masks (${(stats.masks / Math.max(1, stats.images)).toFixed(1)} per image).`,
  );
  console.log(`  SA-1B mask files   ${out.uri('')}${runLayout.masksPrefix(config.run)}`);
  console.log(`  dataset manifest   ${out.uri(runLayout.datasetManifest(config.run))}`);
  console.log(`  statistics         ${out.uri(runLayout.datasetStats(config.run))}`);
  console.log(
    `  image 0: ${first.annotations.length} masks, RLE decodes to the recorded areas: ${decodedOk ? 'yes' : 'NO'}`,
  );
}
