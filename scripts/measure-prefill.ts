// Measures stage 2's pre-fill (lib/stage2/prefill.ts) on held-out synthetic scenes with ground
// truth: detections and pre-filled masks per image, how many of those masks are right (IoU ≥ 0.5
// with some true mask, one-to-one), and how many true masks an annotator no longer has to draw.
//
//   npx tsx scripts/measure-prefill.ts [--sam models/sae-ref] [--detector models/sae-det]
//       [--images 20] [--seed 7777] [--prompt centre-point|box]
//
// Thresholds: the SAM package's AMG calibration (model.json amg_calibration), else the official
// 0.88 / 0.95. The scenes are the first N of `sa-engine synth --seed S` (7777: never trained on).
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DetectorSession } from '../lib/detector/detector.ts';
import { rleArea, rleIou, type Rle } from '../lib/rle.ts';
import { SamSession } from '../lib/sam/session.ts';
import { prefillMasks, type PrefillPrompt } from '../lib/stage2/prefill.ts';
import { COVERED_IOU } from '../lib/stage2/coverage.ts';
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
  await sam.release();
}

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
