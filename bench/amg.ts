// `npm run bench:amg`: images per second of our AMG and of the official segment-anything AMG on the
// same weights and images, measured in one run, with our time split by phase.
//
//   npm run bench:amg -- [--synthetic N] [--real N] [--points-per-side N] [--crop-n-layers N]
//     [--pred-iou-thresh X] [--stability-score-thresh X] [--box-nms-thresh X] [--crop-nms-thresh X] [--package DIR]
//
// The last line is `amg speed ratio (ours/official): X.XX` (images/s over images/s).
import { join } from 'node:path';
import { benchImages, parseBenchArgs, runOfficial, runOurs, sum } from './amg-common.ts';

const { synthetic, real, settings, packageDir } = parseBenchArgs({ synthetic: 4, real: 2 });
const paths = await benchImages(synthetic, real);
console.log(`${paths.length} images, settings ${JSON.stringify(settings)}`);

// Official first, so ours does not benefit from a warmer page cache.
const official = await runOfficial(paths, settings, join(packageDir, 'checkpoint.pt'));
const ours = await runOurs(paths, settings, packageDir);

const oursSeconds = sum(ours.seconds);
const officialSeconds = sum(official.seconds);
const oursRate = paths.length / oursSeconds;
const officialRate = paths.length / officialSeconds;
const t = ours.timings;
const ms = (x: number) => `${(x / paths.length).toFixed(0).padStart(7)} ms/image`;
console.log(`official: ${officialRate.toFixed(3)} images/s (${official.threads} torch threads)`);
console.log(`ours:     ${oursRate.toFixed(3)} images/s`);
console.log(`  load        ${ms(t.load)}`);
console.log(`  encode      ${ms(t.encode)}`);
console.log(`  decode      ${ms(t.decode)}   (${((t.prompts / t.decode) * 1000).toFixed(1)} prompts/s)`);
console.log(`  filter+NMS  ${ms(t.filter)}   (upsampling, stability, boxes, uncrop RLE)`);
console.log(`  postprocess ${ms(t.postprocess)}`);
console.log(`  RLE         ${ms(t.rle)}   (COCO compression, SA-1B records)`);
console.log(
  `masks per image: ours ${(sum(ours.annotations.map((a) => a.length)) / paths.length).toFixed(1)}, official ${(sum(official.records.map((r) => r.length)) / paths.length).toFixed(1)}`,
);
console.log(`amg speed ratio (ours/official): ${(oursRate / officialRate).toFixed(2)}`);
