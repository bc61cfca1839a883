// `sa-engine demo`: the embedded default end to end. Starts the local dev stack if none runs,
// writes a small synthetic image set to a local folder, runs the fully automatic stage and the
// dataset statistics with the reference model through Temporal, audits the masks against the
// images' synthetic ground truth, and says where everything is and how good the masks are.
//
// The reference model is small and weak: its predicted IoUs and stability scores never reach the
// official filter thresholds (0.88, 0.95), which would leave every mask file empty. The demo uses
// the thresholds calibrated for it on held-out images (model.json `amg_calibration`,
// scripts/calibrate-amg.ts) through `stage3.thresholds: model`, and says so.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { follow, startRun } from '../../client/runs.ts';
import { describeStack, ensureDevStack } from '../../infra/dev-control.ts';
import { defaultStateDir } from '../../infra/dev-state.ts';
import type { AuditReport, AuditSummary } from '../../lib/audit/audit.ts';
import { readModelPackage, type ModelPackage } from '../../lib/sam/model-package.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { decompressRle, rleArea } from '../../lib/rle.ts';
import { createRunConfigSchema, type RunConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { connectClient, resolveEndpoints, workflowUrl } from '../endpoints.ts';
import { startLocalWorkers } from '../local-workers.ts';
import { ProgressView } from '../progress-view.ts';

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

      const model = await referenceModel();
      const config = demoConfig(imagesDir, join(demoDir, 'out'), Number(flags.pointsPerSide));
      const endpoints = resolveEndpoints({}, config);
      const client = await connectClient(endpoints);
      const workers = await startLocalWorkers(endpoints);
      try {
        const handle = await startRun(client, config);
        console.log(
          `Run ${config.run} started; follow it in the Temporal UI: ${workflowUrl(endpoints, config.run) ?? endpoints.address}`,
        );
        const result = await follow(client, handle, new ProgressView());
        await printSummary(config, model, result.stage3?.imagesDone ?? 0, result.audit);
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

/** The reference model's package; it must carry the AMG calibration the demo runs with. */
async function referenceModel(): Promise<ModelPackage> {
  if (!existsSync(join(REFERENCE_MODEL_DIR, 'model.json'))) {
    throw new Error(
      `the reference model is missing at ${REFERENCE_MODEL_DIR} (model.json); is the clone complete?`,
    );
  }
  const model = await readModelPackage(REFERENCE_MODEL_DIR);
  if (!model.amgCalibration) {
    throw new Error(
      `${REFERENCE_MODEL_DIR}/model.json has no amg_calibration, which the demo runs with ` +
        '(stage3.thresholds: model); measure it with `npx tsx scripts/calibrate-amg.ts models/sae-ref --write`',
    );
  }
  return model;
}

export function demoConfig(imagesDir: string, outDir: string, pointsPerSide: number): RunConfig {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return createRunConfigSchema().parse({
    run: `demo-${stamp}`,
    images: { prefix: pathToFileURL(join(imagesDir, 'images')).href },
    output: pathToFileURL(outDir).href,
    models: { sam: pathToFileURL(REFERENCE_MODEL_DIR).href },
    // thresholds: model = the reference model's calibrated filter thresholds (see the top of this file).
    stage3: { pointsPerSide, thresholds: 'model', shardSize: 8, maxConcurrentShards: 2, batchImages: 4 },
    // Every image against the ground truth the synthetic writer drew (COCO, next to images/).
    audit: {
      enabled: true,
      reference: { uri: pathToFileURL(join(imagesDir, ANNOTATIONS_KEY)).href, format: 'coco' },
    },
    release: { enabled: false },
  });
}

async function printSummary(
  config: RunConfig,
  model: ModelPackage,
  imagesDone: number,
  audit: AuditSummary | undefined,
): Promise<void> {
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
  for (const line of thresholdLines(model, config)) console.log(line);
  if (audit) {
    const report = JSON.parse((await out.get(audit.reportJsonKey)).toString('utf8')) as AuditReport;
    for (const line of auditLines(audit, report)) console.log(line);
    console.log(`  audit report       ${out.uri(audit.reportHtmlKey)}`);
  }
}

const fixed = (x: number | null | undefined, digits = 3) =>
  x === null || x === undefined ? 'n/a' : x.toFixed(digits);
const percent = (x: number | null | undefined) =>
  x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`;

/** Which filter thresholds the masks passed, and what they scored where they were measured. */
export function thresholdLines(model: ModelPackage, config: RunConfig): string[] {
  const c = model.amgCalibration;
  if (config.stage3.thresholds !== 'model' || !c) {
    return [
      `Filter thresholds: predicted IoU > ${config.stage3.predIouThresh}, stability >= ${config.stage3.stabilityScoreThresh} (official).`,
    ];
  }
  const f = c.figures;
  return [
    `Thresholds calibrated for ${model.name} v${model.version} on \`${c.measuredOn}\` (held out from training), ` +
      `${c.pointsPerSide}x${c.pointsPerSide} points: predicted IoU > ${c.predIouThresh}, stability >= ${c.stabilityScoreThresh} ` +
      '(official: 0.88, 0.95, which this model never reaches).',
    `  there: ${fixed(f.masks_per_image, 1)} masks per image, precision ${fixed(f.precision)} and recall ${fixed(f.recall)} ` +
      'at IoU >= 0.5 against every ground-truth mask (wholes, parts, subparts).',
  ];
}

/** The audit's key figures: how close the masks are to the ground truth. */
export function auditLines(audit: AuditSummary, report: Pick<AuditReport, 'figures'>): string[] {
  const { overall, precision } = report.figures;
  return [
    `Audit against the synthetic ground truth (${audit.imagesAudited} images, ${audit.humanMasks} ground-truth masks, ` +
      `${audit.automaticMasks} automatic masks):`,
    `  mean best IoU per ground-truth mask ${fixed(audit.meanIou)}; ${percent(audit.shareAbove075)} above 0.75, ` +
      `${percent(audit.shareAbove090)} above 0.90 (the SAM paper: 97% and 94%)`,
    `  one-to-one at IoU >= 0.5: recall ${fixed(overall.recall.at050)}, precision ${fixed(precision.precisionAt050)}`,
  ];
}
