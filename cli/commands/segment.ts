// `sa-engine segment IMAGE --out FILE.json`: the automatic mask generator on one image, no stack
// needed. A user's first try, and the quickest way to check a model package.
import { readFile, writeFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { createSegmenterFactory } from '../../lib/stage3/segmenter.ts';
import { REFERENCE_MODEL_DIR } from './demo.ts';

interface SegmentFlags {
  out: string;
  model: string;
  pointsPerSide: string;
  cropNLayers: string;
  predIouThresh?: string;
  stabilityScoreThresh?: string;
  minMaskRegionArea?: string;
}

export function registerSegmentCommands(program: Command): void {
  program
    .command('segment')
    .description('Generate masks for one image and write its SA-1B JSON.')
    .argument('<image>', 'image file (JPEG, PNG, BMP, WebP, TIFF, ...)')
    .requiredOption('--out <file.json>', 'where to write the SA-1B per-image JSON')
    .option('--model <dir>', 'model package folder (model.json + ONNX files)', REFERENCE_MODEL_DIR)
    .option('--points-per-side <n>', 'point grid per side', '32')
    .option('--crop-n-layers <n>', 'zoomed crop layers (paper: 2)', '0')
    .option('--pred-iou-thresh <x>', 'keep masks with predicted IoU above this (default 0.88)')
    .option('--stability-score-thresh <x>', 'keep masks with stability at least this (default 0.95)')
    .option('--min-mask-region-area <n>', 'fill holes and drop islands below this many pixels')
    .action(async (image: string, flags: SegmentFlags) => {
      const settings = {
        pointsPerSide: Number(flags.pointsPerSide),
        cropNLayers: Number(flags.cropNLayers),
        ...(flags.predIouThresh ? { predIouThresh: Number(flags.predIouThresh) } : {}),
        ...(flags.stabilityScoreThresh ? { stabilityScoreThresh: Number(flags.stabilityScoreThresh) } : {}),
        ...(flags.minMaskRegionArea ? { minMaskRegionArea: Number(flags.minMaskRegionArea) } : {}),
      };
      const segmenter = await createSegmenterFactory()(pathToFileURL(resolve(flags.model)).href, settings);
      const started = performance.now();
      const result = await segmenter.segment(await readFile(image), { id: 0, fileName: basename(image) });
      await writeFile(flags.out, JSON.stringify(result.sa1b) + '\n');
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(
        `${image}: ${result.width}×${result.height}, ${result.sa1b.annotations.length} masks in ${seconds} s → ${flags.out}`,
      );
    });
}
