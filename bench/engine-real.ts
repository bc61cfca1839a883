// `npm run bench:engine-real`: the data engine teaching the model real photos (issue #24 item 6).
// Stage 1 runs over BSDS training photos (../shared/data/bsds_train, research licence, read in place)
// with simulated annotators whose intent is the photos' human partitions; the run retrains after
// every round on all masks so far (decoder fine-tuning on this CPU) and promotes through the gate.
// Then every model version in the run's registry is measured on GrabCut (never trained on) and on
// held-out synthetic images with the trainer's evaluator, one line per version.
//
//   SAE_REAL_DATA=../shared/data npm run bench:engine-real -- [--rounds R] [--photos N] [--steps S]
//       [--num-points K] [--grabcut N] [--synthetic N]
//
// Each line, a markdown table row: version, parent, promoted?, 1-click mIoU, mIoU at 5 clicks and
// NoC@90 on GrabCut and on synthetic, and the round's masks per image and simulated seconds per mask.
// Needs the trainer's venv (npm run setup). SIGINT or SIGTERM stops what it started and removes its files.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { startAnnotationService, startSimulatedAnnotators } from '../cli/annotation.ts';
import type { Endpoints } from '../cli/endpoints.ts';
import { startLocalWorkers, startTrainerWorker } from '../cli/local-workers.ts';
import { startRun } from '../client/runs.ts';
import { startDevStack, stopProcess } from '../infra/dev-stack.ts';
import { ModelRegistry, registryUri } from '../lib/models/registry.ts';
import { openObjectStore } from '../lib/object-store.ts';
import { createRunConfigSchema } from '../lib/run-config.ts';
import { generateSynthDataset } from '../lib/synth/dataset.ts';
import { REFERENCE_PACKAGE } from './amg-common.ts';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    photos: { type: 'string', default: '20' },
    steps: { type: 'string', default: '60' },
    'num-points': { type: 'string', default: '4' },
    grabcut: { type: 'string', default: '50' },
    synthetic: { type: 'string', default: '25' },
  },
});
const data = process.env.SAE_REAL_DATA;
if (!data) throw new Error('set SAE_REAL_DATA to the shared data folder (../shared/data)');
const ROOT = resolve(import.meta.dirname, '..');
const PYTHON = resolve(ROOT, 'trainer/.venv/bin/python');

const stop = abortOnSignal();
const dir = mkdtempSync(join(tmpdir(), 'sae-bench-engine-real-'));
try {
  const stack = await startDevStack({ stateDir: join(dir, 'stack'), detached: false });
  const endpoints: Endpoints = {
    address: stack.info.temporal.address,
    namespace: stack.info.temporal.namespace,
    storeOptions: {},
  };
  const config = createRunConfigSchema().parse({
    run: 'engine-real',
    images: { prefix: pathToFileURL(join(data, 'bsds_train/images')).href },
    output: pathToFileURL(join(dir, 'out')).href,
    models: { sam: pathToFileURL(REFERENCE_PACKAGE).href },
    temporal: { address: endpoints.address, namespace: endpoints.namespace },
    stage1: {
      enabled: true,
      rounds: Number(values.rounds),
      imagesPerRound: Number(values.photos),
      service: { port: 0 },
      retrain: {
        enabled: true,
        minNewMasks: 1, // after every round
        waitForRetrain: true,
        mode: 'decoder',
        steps: Number(values.steps),
        batchSize: 4,
        masksPerImage: 4,
        numPoints: Number(values['num-points']),
        holdoutFraction: 0.1,
      },
    },
    simulatedAnnotators: {
      enabled: true,
      count: 3,
      intent: { uri: pathToFileURL(join(data, 'bsds_train/partitions')).href, format: 'partitions' },
      maxClicks: 8,
      minArea: 400,
      maxMasksPerImage: 12,
    },
    stage3: { enabled: false },
  });
  const workers = await startLocalWorkers(endpoints);
  const trainer = await startTrainerWorker(endpoints);
  const connection = await Connection.connect({ address: endpoints.address });
  const client = new Client({ connection, namespace: endpoints.namespace });
  const service = await startAnnotationService(config, endpoints, client);
  let over = false;
  const t0 = performance.now();
  try {
    stop.throwIfAborted(); // a signal while the stack and workers started
    const handle = await startRun(client, config);
    const sims = startSimulatedAnnotators(config, endpoints, service, () => over);
    // Cancelled on a signal; settles before the connection closes (a long poll closed under it
    // would retry into a shut-down channel).
    const result = await client.withAbortSignal(stop, () => handle.result()).finally(() => (over = true));
    await sims;
    console.log(`engine run: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    const rounds = result.stage1 ?? [];
    const registry = new ModelRegistry(openObjectStore(registryUri(config)));
    const grabcut = join(dir, 'grabcut');
    python([
      'scripts/masks_to_coco.py',
      '--images',
      join(data, 'grabcut/images'),
      '--masks',
      join(data, 'grabcut/gt'),
      '--out',
      grabcut,
    ]);
    const synthetic = join(dir, 'synthetic');
    await generateSynthDataset({
      images: Number(values.synthetic),
      seed: 7777, // the reference model's held-out seed (models/sae-ref/MODEL_CARD.md)
      write: async (key, bytes) => {
        mkdirSync(dirname(join(synthetic, key)), { recursive: true });
        await writeFile(join(synthetic, key), bytes);
      },
    });
    // Markdown rows, as the model card keeps them.
    console.log(
      '| version | parent | promoted | GrabCut 1-click | @5 clicks | NoC@90 | synthetic 1-click | @5 clicks | NoC@90 | round it assisted: masks/image, s/mask |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const lineage of await registry.versions('sam')) {
      stop.throwIfAborted();
      const checkpoint = join(fileURLToPath(registry.versionUri('sam', lineage.version)), 'checkpoint.pt');
      const g = evaluate(checkpoint, grabcut, Number(values.grabcut), 1);
      const s = evaluate(checkpoint, synthetic, Number(values.synthetic), 4);
      // Round k was assisted by the champion when it started: the version it names in its models.
      const round = rounds.find((r) => Object.keys(r.summary.models).includes(`sam@v${lineage.version}`));
      const figures = round
        ? `${round.summary.masksPerImage.mean?.toFixed(1)}, ${round.summary.secondsPerMask.median?.toFixed(1)}`
        : '-';
      const cells = [
        `v${lineage.version}`,
        lineage.parent ? `v${lineage.parent.version}` : '-',
        lineage.gate ? (lineage.gate.promoted ? 'yes' : 'no') : '-',
        ...[g, s].flatMap((m) => [m.miou_1click, m.miou_at_clicks['5'] ?? NaN, m.noc90]).map(figure),
        figures,
      ];
      console.log(`| ${cells.join(' | ')} |`);
    }
  } finally {
    over = true;
    await service.close();
    await trainer.shutdown();
    await workers.shutdown();
    await connection.close();
    await Promise.all(stack.processes.map((p) => stopProcess(p.pid)));
  }
} catch (err) {
  if (!stop.aborted) throw err;
  console.error((stop.reason as Error).message);
} finally {
  rmSync(dir, { recursive: true, force: true });
  // The in-process simulated annotators may still wait on the closed service: do not wait for them.
  if (stop.aborted) process.exit();
}

/**
 * Aborted on SIGINT or SIGTERM (exit status 130 / 143), so that the bench stops the stack, workers,
 * trainer and service it started, and removes its files, instead of leaving them running.
 */
function abortOnSignal(): AbortSignal {
  const controller = new AbortController();
  for (const [signal, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)
    process.once(signal, () => {
      process.exitCode = status;
      controller.abort(new Error(`stopped by ${signal}: the stack, workers and files it started are gone`));
    });
  return controller.signal;
}

function python(args: string[]): string {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run npm run setup`);
  return execFileSync(PYTHON, args, { cwd: resolve(ROOT, 'trainer'), encoding: 'utf8' });
}

/** The trainer's evaluator (RITM clicks, 20 at most) on a COCO folder. */
function evaluate(checkpoint: string, folder: string, images: number, masksPerImage: number): Figures {
  const out = join(dir, `metrics-${Math.random().toString(36).slice(2)}.json`);
  python([
    '-m',
    'sae_trainer',
    'evaluate',
    '--checkpoint',
    checkpoint,
    '--data',
    folder,
    '--max-images',
    String(images),
    '--max-masks-per-image',
    String(masksPerImage),
    '--device',
    'cpu',
    '--out',
    out,
  ]);
  return JSON.parse(readFileSync(out, 'utf8')) as Figures;
}

/** What the bench prints of the evaluator's figures. */
interface Figures {
  miou_1click: number;
  miou_at_clicks: Record<string, number>;
  noc90: number;
}

function figure(value: number): string {
  return value >= 1 ? value.toFixed(2) : value.toFixed(3);
}
