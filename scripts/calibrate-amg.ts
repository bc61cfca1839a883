// Calibrates the automatic mask generator's filter thresholds (predIouThresh,
// stabilityScoreThresh) for a model package on held-out synthetic images with ground truth, and
// with --write stores the result in the package's model.json as `amg_calibration` (a run config
// uses it with `stage3.thresholds: model`). The rule is lib/amg/calibration.ts's.
//
//   npx tsx scripts/calibrate-amg.ts models/sae-ref                  # measure and print
//   npx tsx scripts/calibrate-amg.ts models/sae-ref --write          # ... and store it
//
// Options: --images N (20), --seed S (7777: the model card's held-out set; the images are the
// first N of `sa-engine synth --images 100 --seed 7777`), --points-per-side N (16, the demo's
// grid), --cache FILE (keep the unfiltered candidates there and reuse them on the next run with
// the same settings: changing the rule then takes seconds, not the AMG's minutes).
// The seed the package was trained on (model.json lineage.training_data) is refused.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  CALIBRATION_RULE,
  calibrate,
  calibrationImage,
  evaluateThresholds,
  type CalibrationFigures,
  type CalibrationImage,
} from '../lib/amg/calibration.ts';
import { loadHumanMasks, openReference } from '../lib/audit/reference.ts';
import { AutomaticMaskGenerator } from '../lib/amg/generator.ts';
import { loadImage } from '../lib/images/image-io.ts';
import { openObjectStore } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import { SamSession } from '../lib/sam/session.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../lib/synth/dataset.ts';

const OFFICIAL = { predIouThresh: 0.88, stabilityScoreThresh: 0.95 };

interface Settings {
  model: string;
  images: number;
  seed: number;
  pointsPerSide: number;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      images: { type: 'string', default: '20' },
      seed: { type: 'string', default: '7777' },
      'points-per-side': { type: 'string', default: '16' },
      cache: { type: 'string' },
      write: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new Error('usage: calibrate-amg.ts <model-dir> [--write] [options]');
  const settings: Settings = {
    model: resolve(positionals[0]!),
    images: Number(values.images),
    seed: Number(values.seed),
    pointsPerSide: Number(values['points-per-side']),
  };
  const modelJson = join(settings.model, 'model.json');
  const raw = JSON.parse(readFileSync(modelJson, 'utf8')) as Record<string, unknown>;
  refuseTrainingSeed(raw, settings.seed);

  const images = await calibrationImages(settings, values.cache);
  const { best, table } = calibrate(images);
  const official = evaluateThresholds(images, OFFICIAL);
  const measuredOn = `sa-engine synth --images ${settings.images} --seed ${settings.seed}`;
  console.log(
    `\n${images.length} images (${measuredOn}), ${settings.pointsPerSide}×${settings.pointsPerSide} points`,
  );
  console.log(`rule: ${CALIBRATION_RULE}\n`);
  console.log(header());
  const top = [...table].sort((a, b) => b.f1 - a.f1).slice(0, 8);
  for (const row of top) console.log(line(row, row === best ? '  <- chosen' : ''));
  console.log(line(official, '  (official)'));
  console.log(line(table[0]!, '  (no filter)'));

  if (values.write) {
    const calibration = {
      pred_iou_thresh: best.predIouThresh,
      stability_score_thresh: best.stabilityScoreThresh,
      points_per_side: settings.pointsPerSide,
      box_nms_thresh: 0.7,
      measured_on: measuredOn,
      rule: CALIBRATION_RULE,
      command: `npx tsx scripts/calibrate-amg.ts <model-dir> --images ${settings.images} --seed ${settings.seed} --points-per-side ${settings.pointsPerSide} --write`,
      figures: figuresJson(best),
      official_figures: figuresJson(official),
    };
    writeFileSync(modelJson, withCalibration(readFileSync(modelJson, 'utf8'), calibration));
    console.log(`\nwrote amg_calibration to ${modelJson}`);
  }
}

/**
 * model.json's text with `amg_calibration` as its last field, the rest byte for byte as it was
 * (the trainer's export writes it with Python's json module: 0.0, 5.3e-05, \u escapes).
 */
function withCalibration(text: string, calibration: Record<string, unknown>): string {
  const existing = text.search(/,\s*"amg_calibration":/);
  const base = existing >= 0 ? text.slice(0, existing) : text.replace(/\s*\}\s*$/, '');
  const block = JSON.stringify(calibration, null, 2).replace(/\n/g, '\n  ');
  const out = `${base},\n  "amg_calibration": ${block}\n}`;
  const expected = { ...(JSON.parse(text) as Record<string, unknown>), amg_calibration: calibration };
  if (JSON.stringify(JSON.parse(out)) !== JSON.stringify(expected))
    throw new Error('amg_calibration is not the last field of model.json; cannot update it in place');
  return out;
}

/** The training images of a package must not be the calibration images. */
function refuseTrainingSeed(raw: Record<string, unknown>, seed: number): void {
  const lineage = raw.lineage as { training_data?: unknown } | undefined;
  const trained =
    typeof lineage?.training_data === 'string' ? /--seed (\d+)/.exec(lineage.training_data) : null;
  if (trained && Number(trained[1]) === seed) {
    throw new Error(
      `seed ${seed} is the package's training set (${String(lineage?.training_data)}); calibrate on held-out images`,
    );
  }
}

async function calibrationImages(settings: Settings, cache: string | undefined): Promise<CalibrationImage[]> {
  const key = JSON.stringify({ ...settings, format: 1 });
  if (cache && existsSync(cache)) {
    const cached = JSON.parse(readFileSync(cache, 'utf8')) as { key: string; images: CalibrationImage[] };
    if (cached.key === key) {
      console.log(`reusing the candidates in ${cache}`);
      return cached.images;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'sae-calibrate-'));
  try {
    const root = pathToFileURL(dir).href;
    const store = openObjectStore(root);
    await generateSynthDataset({
      images: settings.images,
      seed: settings.seed,
      write: (k, bytes) => store.put(k, Buffer.from(bytes)),
    });
    const coco = JSON.parse((await store.get(ANNOTATIONS_KEY)).toString('utf8')) as {
      images: { file_name: string; width: number; height: number }[];
    };
    const stores = new StoreCache();
    const reference = await openReference(stores, {
      uri: `${root}/${ANNOTATIONS_KEY}`,
      format: 'coco',
      ignoreValue: null,
    });
    const session = await SamSession.load(settings.model);
    // Both filters and the in-crop NMS off: every candidate, in the AMG's order (amg-calibration.ts).
    const amg = new AutomaticMaskGenerator(session, {
      pointsPerSide: settings.pointsPerSide,
      predIouThresh: 0,
      stabilityScoreThresh: 0,
      boxNmsThresh: 1,
    });
    const runImages = coco.images.map((c) => ({ key: `${root}/${c.file_name}`, w: c.width, h: c.height }));
    const entries = await reference.entries(runImages);
    const images: CalibrationImage[] = [];
    for (const [i, { file_name }] of coco.images.entries()) {
      const started = performance.now();
      const decoded = await loadImage(await store.get(file_name));
      const { masks } = await amg.generate(decoded);
      const image = { key: `${root}/${file_name}`, w: decoded.width, h: decoded.height };
      const humans = await loadHumanMasks(stores, entries[i]!, image);
      images.push(
        calibrationImage(
          masks,
          humans.masks.map((m) => m.rle),
          humans.ignore,
        ),
      );
      console.log(
        `image ${i + 1}/${coco.images.length}: ${masks.length} candidates, ${humans.masks.length} ground-truth masks ` +
          `(${((performance.now() - started) / 1000).toFixed(1)} s)`,
      );
    }
    await stores.close();
    if (cache) writeFileSync(cache, JSON.stringify({ key, images }));
    return images;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function figuresJson(f: CalibrationFigures): Record<string, number> {
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    images: f.images,
    ground_truth_masks: f.groundTruth,
    masks: f.masks,
    masks_per_image: r3(f.masksPerImage),
    matched_at_iou_0_5: f.matched,
    precision: r3(f.precision),
    recall: r3(f.recall),
    f1: r3(f.f1),
    mean_best_iou_per_ground_truth_mask: r3(f.meanBestIou),
  };
}

function header(): string {
  return 'pred_iou  stability  masks/img  precision  recall  F1     mean best IoU per GT mask';
}

function line(f: CalibrationFigures, note: string): string {
  return (
    `${f.predIouThresh.toFixed(2).padStart(8)}  ${f.stabilityScoreThresh.toFixed(2).padStart(9)}  ` +
    `${f.masksPerImage.toFixed(1).padStart(9)}  ${f.precision.toFixed(3).padStart(9)}  ` +
    `${f.recall.toFixed(3).padStart(6)}  ${f.f1.toFixed(3)}  ${f.meanBestIou.toFixed(3)}${note}`
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
