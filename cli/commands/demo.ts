// `sa-engine demo`: the whole data engine on the embedded default, on a small synthetic image set.
// Starts the local dev stack if none runs, builds the trainer's venv if it is missing, writes the
// images, and runs one dataset run through Temporal:
//
//   stage 1   an assisted-manual round: simulated annotators click through the annotation service
//             (the browser tool's HTTP API), then SAM is retrained on their masks (eval-gated)
//   stage 2   the box detector, seeded with the reference detector, is trained on every mask so
//             far; a semi-automatic round arrives pre-filled from its boxes
//   stage 3   the fully automatic generator over every image, with the SAM version promoted last
//   then      the dataset statistics, the audit against the synthetic ground truth, the engine report
//
// It prints where to watch (the Temporal UI) and where the annotation tool is; `--annotate` keeps
// one image of the stage-1 round for a person, and the round waits until they finish it.
//
// The reference model is small and weak: its predicted IoUs and stability scores never reach the
// official filter thresholds (0.88, 0.95), which would leave every mask file empty. Stage 3 and
// stage 2's pre-fill use the thresholds calibrated for it on held-out images (model.json
// `amg_calibration`, scripts/calibrate-amg.ts), set in the run's config, and the demo says so.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { describeStack, ensureDevStack } from '../../infra/dev-control.ts';
import { defaultStateDir } from '../../infra/dev-state.ts';
import type { AuditReport, AuditSummary } from '../../lib/audit/audit.ts';
import { readModelPackage, type ModelPackage } from '../../lib/sam/model-package.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { decompressRle, rleArea } from '../../lib/rle.ts';
import { createRunConfigSchema, formatRunConfig, type RunConfig } from '../../lib/run-config.ts';
import { annotatedImages } from '../../lib/run-input.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import type { DatasetRunResult } from '../../workflows/dataset-run.ts';
import { describeRunResult } from '../../client/run-status.ts';
import type { RunningAnnotationService } from '../annotation.ts';
import { connectClient, resolveEndpoints, workflowUrl, type Endpoints } from '../endpoints.ts';
import { startLocalWorkers } from '../local-workers.ts';
import { runInProcess } from '../run-in-process.ts';

/** The reference models committed with the project (trained by trainer/, see their model cards). */
export const REFERENCE_MODEL_DIR = resolve(import.meta.dirname, '../../models/sae-ref');
export const REFERENCE_DETECTOR_DIR = resolve(import.meta.dirname, '../../models/sae-det');
const TRAINER_PYTHON = resolve(import.meta.dirname, '../../trainer/.venv/bin/python');
const INSTALL_PYTHON = resolve(import.meta.dirname, '../../infra/install-python.sh');

/** The image of the stage-1 round that `--annotate` keeps for a person. */
const PERSON_IMAGE = { round: 1, imageId: 0 };

interface DemoFlags {
  images: string;
  seed: string;
  pointsPerSide: string;
  annotate?: boolean;
}

export function registerDemoCommands(program: Command): void {
  program
    .command('demo')
    .description(
      'Run the whole data engine (stages 1, 2 and 3, audit, report) on a small synthetic image set, on the embedded default stack.',
    )
    .option(
      '--images <n>',
      'synthetic images (stages 1 and 2 annotate 6 of them; stage 3 segments the rest)',
      '10',
    )
    .option('--seed <s>', 'seed of the synthetic images', '2026')
    // 16×16 keeps the demo to a few minutes on 2 CPU cores; the paper's grid is 32×32.
    .option('--points-per-side <n>', 'automatic mask generator grid (paper: 32)', '16')
    .option('--annotate', 'keep one image of the stage-1 round for you to annotate in the browser tool')
    .action(async (flags: DemoFlags) => {
      const images = checkDemoImages(flags.images);
      const stateDir = defaultStateDir();
      const { state, reused } = await ensureDevStack({ stateDir });
      console.log(reused ? 'Using the running dev stack:' : 'Started the dev stack:');
      console.log(describeStack(state).join('\n'));
      ensureTrainerVenv();

      const demoDir = join(stateDir, 'demo');
      const imagesDir = join(demoDir, `images-seed${flags.seed}-n${flags.images}`);
      await writeDemoImages(imagesDir, images, Number(flags.seed));

      const model = await referenceModel();
      const config = demoConfig(imagesDir, join(demoDir, 'out'), {
        pointsPerSide: Number(flags.pointsPerSide),
        calibration: model.amgCalibration!,
        annotate: flags.annotate === true,
      });
      // The run's config as a file: to rerun it with `sa-engine run`, and for the annotators' process.
      const configFile = join(demoDir, `${config.run}.yaml`);
      writeFileSync(configFile, formatRunConfig(config, 'yaml'));
      const endpoints = resolveEndpoints({}, config);
      const client = await connectClient(endpoints);
      const workers = await startLocalWorkers(endpoints);
      const started = Date.now();
      try {
        const result = await runInProcess(config, configFile, endpoints, client, workers, {
          onStarted: (annotation) =>
            announce(config, configFile, endpoints, annotation, flags.annotate === true),
          leaveForPerson: flags.annotate ? PERSON_IMAGE : undefined,
        });
        await printSummary(config, model, result, (Date.now() - started) / 1000);
      } finally {
        await workers.shutdown();
        await client.connection.close();
      }
    });
}

/** The trainer retrains SAM and trains the detector; a fresh machine builds its venv once. */
function ensureTrainerVenv(): void {
  if (existsSync(TRAINER_PYTHON)) return;
  console.log("Building the trainer's Python environment once (PyTorch from PyPI; minutes) ...");
  execFileSync('bash', [INSTALL_PYTHON], { stdio: 'inherit' });
}

async function announce(
  config: RunConfig,
  configFile: string,
  endpoints: Endpoints,
  annotation: RunningAnnotationService | undefined,
  annotate: boolean,
): Promise<void> {
  console.log(`Run ${config.run} started (its config: ${configFile}).`);
  console.log(`  watch it in the Temporal UI: ${workflowUrl(endpoints, config.run) ?? endpoints.address}`);
  if (!annotation) return;
  console.log(`  annotation tool: ${annotation.url}`);
  if (!annotate) {
    console.log('  (simulated annotators do the rounds; `sa-engine demo --annotate` keeps an image for you)');
    return;
  }
  const token = await annotation.accounts.add('you', { replace: true });
  console.log(
    `  The stage-1 round waits for you: open the annotation tool, log in with the token below, click\n` +
      `  the objects of the image you get (Enter accepts a mask) and press "Next image" (N).\n` +
      `  token: ${token}`,
  );
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

/** The demo's rounds take 6 images (3 + 3); stage 3 needs at least one more. */
export const DEMO_ANNOTATED_IMAGES = 6;

/** `--images` as the demo needs it: a whole number above the images its rounds take. */
export function checkDemoImages(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= DEMO_ANNOTATED_IMAGES) {
    throw new Error(
      `--images must be a whole number above ${DEMO_ANNOTATED_IMAGES}, got "${value}": the demo's ` +
        `stage-1 and stage-2 rounds take ${DEMO_ANNOTATED_IMAGES} images and stage 3 segments the rest`,
    );
  }
  return n;
}

interface DemoSettings {
  pointsPerSide: number;
  /** The reference model's calibrated filter thresholds (see the top of this file). */
  calibration: { predIouThresh: number; stabilityScoreThresh: number };
  /** Keep one stage-1 image for a person: the round then waits for them (up to its deadline). */
  annotate: boolean;
}

/**
 * The demo's run: 3 images in a stage-1 round, a SAM retrain on their masks, the detector trained
 * on them, 3 images in a stage-2 round, then stage 3 over the rest. Sized for a few minutes on 2
 * CPU cores: short trainings, few clicks, a 16×16 grid (about 25 s an image for stage 3 here).
 */
export function demoConfig(imagesDir: string, outDir: string, settings: DemoSettings): RunConfig {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const { predIouThresh, stabilityScoreThresh } = settings.calibration;
  const groundTruth = { uri: pathToFileURL(join(imagesDir, ANNOTATIONS_KEY)).href, format: 'coco' };
  const run = `demo-${stamp}`;
  return createRunConfigSchema().parse({
    run,
    images: { prefix: pathToFileURL(join(imagesDir, 'images')).href },
    output: pathToFileURL(outDir).href,
    models: {
      sam: pathToFileURL(REFERENCE_MODEL_DIR).href,
      detector: pathToFileURL(REFERENCE_DETECTOR_DIR).href,
      // A registry of its own: every demo starts from the committed models, not from the versions an
      // earlier demo promoted (a shared registry's champion would carry over).
      registry: pathToFileURL(join(outDir, 'registries', run)).href,
    },
    stage1: {
      enabled: true,
      rounds: 1,
      imagesPerRound: 3,
      roundDeadline: settings.annotate ? '1h' : '15m',
      // One retrain, after the stage-1 round: every mask is new then, and an hour passes before the next.
      retrain: {
        enabled: true,
        minNewMasks: 1,
        minInterval: '1h',
        waitForRetrain: true,
        steps: 6,
        batchSize: 1,
        masksPerImage: 2,
        numPoints: 1,
        holdoutFraction: 0.34,
        maxEvalImages: 1,
      },
    },
    stage2: {
      enabled: true,
      rounds: 1,
      imagesPerRound: 3,
      detector: { maxDetections: 30 },
      prefill: { prompt: 'centre-point', predIouThresh, stabilityScoreThresh },
      retrain: { steps: 60, batchSize: 4, holdoutFraction: 0.34 },
    },
    // The people stand-ins: they know each image's objects from the synthetic ground truth.
    simulatedAnnotators: {
      enabled: true,
      count: 2,
      intent: groundTruth,
      maxClicks: 4,
      maxMasksPerImage: 6,
    },
    // Explicit thresholds, not `model`: stage 3 segments with the version the run promotes last,
    // whose own calibration would be measured on the one image the retrain holds out.
    // Over the images no round annotated, as the engine does (the paper's ran over all).
    stage3: {
      skipAnnotated: true,
      pointsPerSide: settings.pointsPerSide,
      predIouThresh,
      stabilityScoreThresh,
      shardSize: 8,
      maxConcurrentShards: 2,
      batchImages: 4,
    },
    // Every image against the ground truth the synthetic writer drew (COCO, next to images/).
    audit: { enabled: true, reference: groundTruth },
    release: { enabled: false },
  });
}

async function printSummary(
  config: RunConfig,
  model: ModelPackage,
  result: DatasetRunResult,
  seconds: number,
): Promise<void> {
  const out = openObjectStore(config.output);
  console.log(`\nThe engine ran in ${Math.round(seconds)} s:`);
  for (const line of describeRunResult(result)) console.log(line);
  // Decode one mask file as a user would, to show the output is real COCO RLE.
  const firstId = config.stage3.skipAnnotated ? annotatedImages(config) : 0;
  const first = JSON.parse((await out.get(runLayout.masks(config.run, firstId))).toString('utf8')) as {
    annotations: { segmentation: { size: [number, number]; counts: string }; area: number }[];
  };
  const decodedOk = first.annotations.every((a) => rleArea(decompressRle(a.segmentation)) === a.area);
  console.log(`  SA-1B mask files   ${out.uri('')}${runLayout.masksPrefix(config.run)}`);
  console.log(`  dataset manifest   ${out.uri(runLayout.datasetManifest(config.run))}`);
  console.log(`  statistics         ${out.uri(runLayout.datasetStats(config.run))}`);
  console.log(
    `  image ${firstId}: ${first.annotations.length} masks, RLE decodes to the recorded areas: ${decodedOk ? 'yes' : 'NO'}`,
  );
  for (const line of thresholdLines(model, config)) console.log(line);
  if (result.audit) {
    const report = JSON.parse((await out.get(result.audit.reportJsonKey)).toString('utf8')) as AuditReport;
    for (const line of auditLines(result.audit, report)) console.log(line);
    console.log(`  audit report       ${out.uri(result.audit.reportHtmlKey)}`);
  }
  if (result.report?.key) console.log(`Engine report: ${out.uri(result.report.key)}`);
  else if (result.report?.error) console.log(`The engine report failed: ${result.report.error}`);
}

const fixed = (x: number | null | undefined, digits = 3) =>
  x === null || x === undefined ? 'n/a' : x.toFixed(digits);
const percent = (x: number | null | undefined) =>
  x === null || x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`;

/** Which filter thresholds stage 3's masks passed, and what they scored where they were measured. */
export function thresholdLines(model: ModelPackage, config: RunConfig): string[] {
  const c = model.amgCalibration;
  const { predIouThresh, stabilityScoreThresh } = config.stage3;
  const fromModel = config.stage3.thresholds === 'model';
  if (
    !c ||
    (!fromModel && (predIouThresh !== c.predIouThresh || stabilityScoreThresh !== c.stabilityScoreThresh))
  ) {
    return [
      `Filter thresholds: predicted IoU > ${predIouThresh}, stability >= ${stabilityScoreThresh} (the config's).`,
    ];
  }
  const f = c.figures;
  return [
    `Filter thresholds: those calibrated for ${model.name} v${model.version} on \`${c.measuredOn}\` (held out from training), ` +
      `${c.pointsPerSide}x${c.pointsPerSide} points: predicted IoU > ${c.predIouThresh}, stability >= ${c.stabilityScoreThresh} ` +
      '(official: 0.88, 0.95, which this model never reaches); a version the run promoted segments with them too.',
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
