// `npm run bench:amg`: images per second of our AMG and of the official segment-anything AMG on the
// same weights and images, measured in one run, with our time split by phase.
//
//   npm run bench:amg -- [--synthetic N] [--real N] [--points-per-side N] [--crop-n-layers N]
//
// The last line is `amg speed ratio (ours/official): X.XX` (images/s over images/s).
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { benchImages, REFERENCE_PACKAGE, runOfficial, runOurs, sum } from './amg-common.ts';

const { values } = parseArgs({
  options: {
    synthetic: { type: 'string', default: '4' },
    real: { type: 'string', default: '2' },
    'points-per-side': { type: 'string', default: '32' },
    'crop-n-layers': { type: 'string', default: '0' },
    'pred-iou-thresh': { type: 'string', default: '0.88' },
    'stability-score-thresh': { type: 'string', default: '0.95' },
    /** A model package with checkpoint.pt; default models/sae-ref. trainer/scripts/random_model.py makes one. */
    package: { type: 'string', default: REFERENCE_PACKAGE },
  },
});
const settings = {
  pointsPerSide: Number(values['points-per-side']),
  cropNLayers: Number(values['crop-n-layers']),
  predIouThresh: Number(values['pred-iou-thresh']),
  stabilityScoreThresh: Number(values['stability-score-thresh']),
};
const paths = await benchImages(Number(values.synthetic), Number(values.real));
console.log(`${paths.length} images, settings ${JSON.stringify(settings)}`);

// Official first, so ours does not benefit from a warmer page cache.
const official = await runOfficial(paths, settings, join(values.package, 'checkpoint.pt'));
const ours = await runOurs(paths, settings, values.package);

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
