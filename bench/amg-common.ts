// What the AMG benchmark and the parity check share: the images they run on, our generator over
// them, and the official Python generator (bench/official_amg.py) over the same images and weights.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'; // not actionable in a benchmark
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { sa1bImageJson, type Sa1bAnnotation } from '../lib/amg/records.ts';
import {
  AutomaticMaskGenerator,
  type GeneratorSettings,
  type GeneratorTimings,
} from '../lib/amg/generator.ts';
import { loadImage } from '../lib/images/image-io.ts';
import { SamSession } from '../lib/sam/session.ts';
import { generateSynthDataset } from '../lib/synth/dataset.ts';

export const ROOT = resolve(import.meta.dirname, '..');
export const PYTHON = process.env.SAE_PYTHON ?? join(ROOT, 'trainer/.venv/bin/python');
export const REFERENCE_PACKAGE = join(ROOT, 'models/sae-ref');
export const REFERENCE_CHECKPOINT = join(REFERENCE_PACKAGE, 'checkpoint.pt');

/** `synthetic` generated images (a seed never used in training) plus up to `real` GrabCut photos. */
export async function benchImages(synthetic: number, real: number): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'sae-bench-'));
  const paths: string[] = [];
  await generateSynthDataset({
    images: synthetic,
    seed: 90210,
    write: async (key, bytes) => {
      if (!key.startsWith('images/')) return;
      const path = join(dir, key.slice('images/'.length));
      writeFileSync(path, bytes);
      paths.push(path);
    },
  });
  const realDir = process.env.SAE_REAL_DATA ? join(process.env.SAE_REAL_DATA, 'grabcut/images') : undefined;
  if (realDir && real > 0) {
    const photos = readdirSync(realDir).sort().slice(0, real);
    paths.push(...photos.map((name) => join(realDir, name)));
  }
  return paths.sort();
}

export interface OursResult {
  annotations: Sa1bAnnotation[][];
  seconds: number[];
  timings: GeneratorTimings & { rle: number; load: number };
}

export async function runOurs(
  paths: string[],
  settings: Partial<GeneratorSettings>,
  packageDir = REFERENCE_PACKAGE,
): Promise<OursResult> {
  const session = await SamSession.load(packageDir);
  const amg = new AutomaticMaskGenerator(session, settings);
  const timings = { encode: 0, decode: 0, filter: 0, postprocess: 0, prompts: 0, rle: 0, load: 0 };
  const annotations: Sa1bAnnotation[][] = [];
  const seconds: number[] = [];
  for (const [index, path] of paths.entries()) {
    const started = performance.now();
    const image = await loadImage(readFileSync(path), { name: path });
    timings.load += performance.now() - started;
    const result = await amg.generate(image);
    const rleStarted = performance.now();
    const json = sa1bImageJson(
      { image_id: index, width: image.width, height: image.height, file_name: path },
      result.masks,
    );
    timings.rle += performance.now() - rleStarted;
    for (const phase of ['encode', 'decode', 'filter', 'postprocess', 'prompts'] as const)
      timings[phase] += result.timings[phase];
    annotations.push(json.annotations);
    seconds.push((performance.now() - started) / 1000);
  }
  await session.release();
  return { annotations, seconds, timings };
}

export interface OfficialResult {
  records: Sa1bAnnotation[][];
  seconds: number[];
  threads: number;
}

export async function runOfficial(
  paths: string[],
  settings: Partial<GeneratorSettings>,
  checkpoint = REFERENCE_CHECKPOINT,
  threads = 0,
): Promise<OfficialResult> {
  const dir = mkdtempSync(join(tmpdir(), 'sae-official-'));
  writeFileSync(join(dir, 'images.txt'), paths.join('\n') + '\n');
  const args = [
    join(ROOT, 'bench/official_amg.py'),
    '--checkpoint',
    checkpoint,
    '--images',
    join(dir, 'images.txt'),
  ];
  args.push('--out', join(dir, 'out'), '--settings', JSON.stringify(settings), '--threads', String(threads));
  await promisify(execFile)(PYTHON, args, { maxBuffer: 64 * 1024 * 1024 });
  const timings = JSON.parse(readFileSync(join(dir, 'out/timings.json'), 'utf8')) as {
    seconds: number[];
    threads: number;
  };
  const records = paths.map(
    (_, i) => JSON.parse(readFileSync(join(dir, 'out', `${i}.json`), 'utf8')) as Sa1bAnnotation[],
  );
  return { records, seconds: timings.seconds, threads: timings.threads };
}

export function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

export interface BenchArgs {
  synthetic: number;
  real: number;
  settings: Partial<GeneratorSettings>;
  /** A model package with checkpoint.pt (trainer/scripts/random_model.py makes one). */
  packageDir: string;
}

/** The flags both AMG scripts take, with the official defaults; only the image counts differ. */
export function parseBenchArgs(defaults: { synthetic: number; real: number }): BenchArgs {
  const { values } = parseArgs({
    options: {
      synthetic: { type: 'string', default: String(defaults.synthetic) },
      real: { type: 'string', default: String(defaults.real) },
      'points-per-side': { type: 'string', default: '32' },
      'crop-n-layers': { type: 'string', default: '0' },
      'pred-iou-thresh': { type: 'string', default: '0.88' },
      'stability-score-thresh': { type: 'string', default: '0.95' },
      'box-nms-thresh': { type: 'string', default: '0.7' },
      'crop-nms-thresh': { type: 'string', default: '0.7' },
      package: { type: 'string', default: REFERENCE_PACKAGE },
    },
  });
  return {
    synthetic: Number(values.synthetic),
    real: Number(values.real),
    settings: {
      pointsPerSide: Number(values['points-per-side']),
      cropNLayers: Number(values['crop-n-layers']),
      predIouThresh: Number(values['pred-iou-thresh']),
      stabilityScoreThresh: Number(values['stability-score-thresh']),
      boxNmsThresh: Number(values['box-nms-thresh']),
      cropNmsThresh: Number(values['crop-nms-thresh']),
    },
    packageDir: values.package,
  };
}
