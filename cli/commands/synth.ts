// `sa-engine synth --out URI --images N --seed S`: write a synthetic ground-truth dataset
// (photo-like images with whole/part/subpart masks, COCO JSON) for tests, benchmarks and
// simulated annotators. The generator lives in lib/synth/; this file only parses options and
// decides where the bytes go.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError, type Command } from 'commander';
import { openObjectStore } from '../../lib/object-store.ts';
import { generateSynthDataset, MAX_SEED } from '../../lib/synth/dataset.ts';

interface SynthCommandOptions {
  /** Store URI of the output folder (parsed from --out). */
  out: string;
  images: number;
  seed: number;
}

export function registerSynthCommands(program: Command): void {
  program
    .command('synth')
    .description(
      'Generate synthetic ground truth: photo-like images with whole/part/subpart masks and COCO annotations.',
    )
    .requiredOption('--out <uri>', 'output: s3://bucket/prefix, file:///dir or a path', parseOut)
    .option('--images <n>', 'number of images', parseCount, 100)
    .option('--seed <s>', 'random seed; the same seed gives the same bytes', parseSeed, 0)
    .action(async (options: SynthCommandOptions) => {
      const store = openObjectStore(options.out);
      const summary = await generateSynthDataset({
        images: options.images,
        seed: options.seed,
        write: (key, bytes) => store.put(key, Buffer.from(bytes)),
        onImage: (done, total) => process.stderr.write(`\rsynth: ${done}/${total} images`),
      });
      if (summary.images > 0) process.stderr.write('\n');
      const { whole, part, subpart } = summary.byLevel;
      process.stdout.write(
        `wrote ${summary.images} images (${summary.jpeg} jpg, ${summary.png} png) and ` +
          `${summary.annotations} annotations (${whole} whole, ${part} part, ${subpart} subpart) ` +
          `to ${store.rootUri}\n`,
      );
    });
}

/** --out as a store URI: s3://bucket/prefix, file:///abs, or a local path. */
function parseOut(value: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : pathToFileURL(path.resolve(value)).href;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number ≥ 0');
  return n;
}

function parseSeed(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > MAX_SEED)
    throw new InvalidArgumentError(`expected an integer 0–${MAX_SEED}`);
  return n;
}
