// Measures stage 2's pre-fill (lib/stage2/prefill.ts) on held-out synthetic scenes with ground
// truth: detections and pre-filled masks per image, how many of those masks are right (IoU ≥ 0.5
// with some true mask, one-to-one), and how many true masks an annotator no longer has to draw.
//
// With --annotate, the paper's stage-2 comparison on the same scenes: the simulated annotator
// (lib/stage1/simulated-annotator.ts, the default model, at most 20 masks of its own per image)
// labels each scene once without pre-fill and once with it (deleting the wrong pre-filled masks
// and labelling what no kept one covers, lib/stage2/coverage.ts): masks per image and seconds per
// mask it added, as the paper's 44 → 72 masks per image.
//
//   npx tsx scripts/measure-prefill.ts [--sam models/sae-ref] [--detector models/sae-det]
//       [--images 20] [--seed 7777] [--prompt centre-point|box] [--annotate]
//
// Thresholds: the SAM package's AMG calibration (model.json amg_calibration), else the official
// 0.88 / 0.95. The scenes are the first N of `sa-engine synth --seed S` (7777: never trained on).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DetectorSession } from '../lib/detector/detector.ts';
import { median } from '../lib/audit/figures.ts';
import { decodeRle, rleArea, rleIou, type Rle } from '../lib/rle.ts';
import { SamSession } from '../lib/sam/session.ts';
import { prefillMasks, type PrefillPrompt } from '../lib/stage2/prefill.ts';
import { annotateImage, DEFAULT_ANNOTATOR } from '../lib/stage1/simulated-annotator.ts';
import { COVERED_IOU, reviewPrefilled } from '../lib/stage2/coverage.ts';
import { hash32, Random } from '../lib/synth/random.ts';
import { renderScene } from '../lib/synth/render.ts';
import { buildScene } from '../lib/synth/scene.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      sam: { type: 'string', default: 'models/sae-ref' },
      detector: { type: 'string', default: 'models/sae-det' },
      images: { type: 'string', default: '20' },
      seed: { type: 'string', default: '7777' },
      prompt: { type: 'string', default: 'centre-point' },
      annotate: { type: 'boolean', default: false },
    },
  });
  const prompt = values.prompt as PrefillPrompt;
  if (prompt !== 'box' && prompt !== 'centre-point') throw new Error('--prompt is box or centre-point');
  const sam = await SamSession.load(resolve(values.sam));
  const detector = await DetectorSession.load(resolve(values.detector));
  const calibration = sam.pkg.amgCalibration;
  const settings = {
    prompt,
    predIouThresh: calibration?.predIouThresh ?? 0.88,
    stabilityScoreThresh: calibration?.stabilityScoreThresh ?? 0.95,
    boxNmsThresh: 0.7,
    batchSize: 32,
  };
  const totals = { images: 0, truths: 0, detections: 0, masks: 0, right: 0, covered: 0, ms: 0 };
  const comparison = { without: [] as number[], kept: 0, rejected: 0, added: [] as number[], withoutN: 0 };
  for (let index = 0; index < Number(values.images); index++) {
    const scene = renderScene(buildScene(new Random(hash32(Number(values.seed), index))));
    const truths = scene.masks.filter((m) => rleArea(m) > 0);
    const embedding = await sam.embed({
      data: scene.rgb,
      width: scene.width,
      height: scene.height,
      channels: 3,
    });
    const started = performance.now();
    const { detections, masks } = await prefillMasks(sam, detector, embedding, settings);
    totals.ms += performance.now() - started;
    const matched = matchOneToOne(
      masks.map((m) => m.rle),
      truths,
    );
    totals.images += 1;
    totals.truths += truths.length;
    totals.detections += detections.length;
    totals.masks += masks.length;
    totals.right += matched;
    totals.covered += truths.filter((t) => masks.some((m) => rleIou(m.rle, t) >= COVERED_IOU)).length;
    if (values.annotate) {
      const intents = truths.map((t) => decodeRle(t));
      const label = async (objects: Uint8Array[]) =>
        (await annotateImage(sam, embedding, objects, scene.height, scene.width, DEFAULT_ANNOTATOR)).slice(
          0,
          MAX_MASKS_PER_IMAGE,
        );
      comparison.without.push(...(await label(intents)).map((m) => m.seconds));
      const review = reviewPrefilled(
        intents,
        masks.map((m) => decodeRle(m.rle)),
      );
      comparison.kept += review.keep.length;
      comparison.rejected += review.reject.length;
      comparison.added.push(...(await label(review.left)).map((m) => m.seconds));
    }
  }
  const per = (n: number) => (n / totals.images).toFixed(1);
  console.log(
    `${sam.modelId} + ${detector.modelId}, prompt ${prompt}, predicted IoU > ${settings.predIouThresh}, ` +
      `stability ≥ ${settings.stabilityScoreThresh}; ${totals.images} scenes (seed ${values.seed}), ` +
      `${per(totals.truths)} true masks per scene`,
  );
  console.log(
    `detections ${per(totals.detections)} / image; pre-filled masks ${per(totals.masks)} / image; ` +
      `right (IoU ≥ ${COVERED_IOU}, one-to-one) ${totals.right} of ${totals.masks} ` +
      `(${((100 * totals.right) / Math.max(1, totals.masks)).toFixed(1)}%); true masks covered ` +
      `${totals.covered} of ${totals.truths} (${((100 * totals.covered) / totals.truths).toFixed(1)}%); ` +
      `${(totals.ms / totals.images).toFixed(0)} ms / image for detection + prompts`,
  );
  if (values.annotate) {
    const { without, kept, rejected, added } = comparison;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    console.log(
      `without pre-fill: ${per(without.length)} masks / image, median ${median(without)} s per mask, ` +
        `${(sum(without) / totals.images).toFixed(0)} s per image`,
    );
    console.log(
      `with pre-fill: ${per(kept + added.length)} masks / image (${per(kept)} pre-filled kept, ` +
        `${per(rejected)} deleted, ${per(added.length)} added), median ${median(added)} s per added mask, ` +
        `${(sum(added) / totals.images).toFixed(0)} s per image`,
    );
  }
  await sam.release();
}

/** The run config's default cap on a simulated annotator's own masks per image. */
const MAX_MASKS_PER_IMAGE = 20;

/** Greedy one-to-one matches at IoU ≥ COVERED_IOU, best pairs first. */
function matchOneToOne(predicted: Rle[], truths: Rle[]): number {
  const pairs: [number, number, number][] = [];
  predicted.forEach((p, i) =>
    truths.forEach((t, j) => {
      const iou = rleIou(p, t);
      if (iou >= COVERED_IOU) pairs.push([iou, i, j]);
    }),
  );
  pairs.sort((a, b) => b[0] - a[0]);
  const usedP = new Set<number>();
  const usedT = new Set<number>();
  for (const [, i, j] of pairs) {
    if (usedP.has(i) || usedT.has(j)) continue;
    usedP.add(i);
    usedT.add(j);
  }
  return usedP.size;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
