// Calibrates the automatic mask generator's filter thresholds (predIouThresh,
// stabilityScoreThresh) for a model package on held-out synthetic images with ground truth, and
// with --write stores the result in the package's model.json as `amg_calibration` (a run config
// uses it with `stage3.thresholds: model`). The rule is lib/amg/calibration.ts's.
//
//   npx tsx scripts/calibrate-amg.ts models/sae-ref                  # measure and print
//   npx tsx scripts/calibrate-amg.ts models/sae-ref --write          # ... and store it
//   npx tsx scripts/calibrate-amg.ts models/sae-ref \
//     --photos $SAE_REAL_DATA/grabcut/images --labels $SAE_REAL_DATA/grabcut/gt --ignore-value 128
//
// Options: --images N (20), --seed S (7777: the model card's held-out set; the images are the
// first N of `sa-engine synth --images 100 --seed 7777`), --points-per-side N (16, the demo's
// grid), --cache FILE (keep the unfiltered candidates there and reuse them on the next run with
// the same settings: changing the rule then takes seconds, not the AMG's minutes).
// --photos DIR --labels DIR [--ignore-value V] measures on real photos instead, their human masks
// given as label images (the audit's `png` reference: 0 background, each other value one object);
// --images then caps how many photos (in name order). Besides the table it prints what the model's
// own thresholds give per photo (masks, and whether each human object is found at IoU >= 0.5) —
// on a set with one object per photo (GrabCut) precision is not meaningful, so --write is refused.
// The seed the package was trained on (model.json lineage.training_data) is refused.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import {
  CALIBRATION_MATCH_IOU,
  CALIBRATION_RULE,
  OFFICIAL_THRESHOLDS,
  calibrate,
  calibrationRecord,
  evaluateThresholds,
  keptAt,
  type CalibrationFigures,
  type CalibrationImage,
  type Thresholds,
} from '../lib/amg/calibration.ts';
import { measureCalibrationImages, type SourceImage } from '../lib/amg/calibration-set.ts';
import { openReference } from '../lib/audit/reference.ts';
import { openObjectStore } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { MaskSourceConfig } from '../lib/run-config.ts';
import { withAmgCalibration } from '../lib/sam/model-package.ts';
import { SamSession } from '../lib/sam/session.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../lib/synth/dataset.ts';

interface Settings {
  model: string;
  images: number;
  seed: number;
  pointsPerSide: number;
  /** Real photos and their label images, instead of synthetic scenes. */
  photos?: { dir: string; labels: string; ignoreValue: number | null };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      images: { type: 'string', default: '20' },
      seed: { type: 'string', default: '7777' },
      'points-per-side': { type: 'string', default: '16' },
      photos: { type: 'string' },
      labels: { type: 'string' },
      'ignore-value': { type: 'string' },
      cache: { type: 'string' },
      write: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new Error('usage: calibrate-amg.ts <model-dir> [--write] [options]');
  if (Boolean(values.photos) !== Boolean(values.labels)) throw new Error('--photos and --labels go together');
  const settings: Settings = {
    model: resolve(positionals[0]!),
    images: Number(values.images),
    seed: Number(values.seed),
    pointsPerSide: Number(values['points-per-side']),
    photos: values.photos
      ? {
          dir: resolve(values.photos),
          labels: resolve(values.labels!),
          ignoreValue: values['ignore-value'] === undefined ? null : Number(values['ignore-value']),
        }
      : undefined,
  };
  if (settings.photos && values.write) {
    throw new Error(
      '--write calibrates on synthetic scenes only: a photo set with one object each has no precision',
    );
  }
  const modelJson = join(settings.model, 'model.json');
  const raw = JSON.parse(readFileSync(modelJson, 'utf8')) as Record<string, unknown>;
  if (!settings.photos) refuseTrainingSeed(raw, settings.seed);

  const images = await calibrationImages(settings, values.cache);
  const { best, table } = calibrate(images);
  const official = evaluateThresholds(images, OFFICIAL_THRESHOLDS);
  const measuredOn = settings.photos
    ? `${settings.photos.dir} (${images.length} photos, labels ${settings.photos.labels})`
    : `sa-engine synth --images ${settings.images} --seed ${settings.seed}`;
  console.log(
    `\n${images.length} images (${measuredOn}), ${settings.pointsPerSide}×${settings.pointsPerSide} points`,
  );
  console.log(`rule: ${CALIBRATION_RULE}\n`);
  console.log(header());
  const top = [...table].sort((a, b) => b.f1 - a.f1).slice(0, 8);
  for (const row of top) console.log(line(row, row === best ? '  <- chosen' : ''));
  console.log(line(official, '  (official)'));
  console.log(line(table[0]!, '  (no filter)'));
  const own = ownThresholds(raw);
  if (own) {
    console.log(line(evaluateThresholds(images, own), "  (the package's amg_calibration)"));
    console.log(perImageLine(images, own));
  }

  if (values.write) {
    // The rule's tie-break would store the strictest pair, with which the AMG keeps nothing.
    if (best.matched === 0) {
      throw new Error(
        'no threshold pair kept a single correct mask on these images: nothing to calibrate on, ' +
          `${modelJson} left as it was`,
      );
    }
    const calibration = calibrationRecord(best, official, {
      pointsPerSide: settings.pointsPerSide,
      measuredOn,
      command: `npx tsx scripts/calibrate-amg.ts <model-dir> --images ${settings.images} --seed ${settings.seed} --points-per-side ${settings.pointsPerSide} --write`,
    });
    writeFileSync(modelJson, withAmgCalibration(readFileSync(modelJson, 'utf8'), calibration));
    console.log(`\nwrote amg_calibration to ${modelJson}`);
  }
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

/** The package's own calibrated thresholds (model.json `amg_calibration`), if it has them. */
function ownThresholds(raw: Record<string, unknown>): Thresholds | undefined {
  const c = raw.amg_calibration as { pred_iou_thresh?: number; stability_score_thresh?: number } | undefined;
  if (typeof c?.pred_iou_thresh !== 'number' || typeof c.stability_score_thresh !== 'number')
    return undefined;
  return { predIouThresh: c.pred_iou_thresh, stabilityScoreThresh: c.stability_score_thresh };
}

/** Masks per image (min / median / max) and images whose every human mask is found at IoU >= 0.5. */
function perImageLine(images: readonly CalibrationImage[], t: Thresholds): string {
  const counts = images.map((image) => keptAt(image, t).length).sort((a, b) => a - b);
  const found = images.filter((image) => evaluateThresholds([image], t).matched === image.groundTruth).length;
  const atLeast20 = counts.filter((n) => n >= 20).length;
  return (
    `  per image at those thresholds: masks min ${counts[0]} / median ${counts[Math.floor(counts.length / 2)]} / ` +
    `max ${counts[counts.length - 1]}; ${atLeast20} of ${images.length} images have >= 20 masks; ` +
    `${found} of ${images.length} have every human mask found at IoU >= ${CALIBRATION_MATCH_IOU}`
  );
}

/** Where the images come from: one synthetic set written to a temporary folder, or a photo folder. */
interface ImageSource {
  images: SourceImage[];
  reference: MaskSourceConfig;
  cleanup: () => void;
}

async function synthSource(settings: Settings): Promise<ImageSource> {
  const dir = mkdtempSync(join(tmpdir(), 'sae-calibrate-'));
  const root = pathToFileURL(dir).href;
  const store = openObjectStore(root);
  await generateSynthDataset({
    images: settings.images,
    seed: settings.seed,
    write: (k, bytes) => store.put(k, Buffer.from(bytes)),
  });
  const coco = JSON.parse((await store.get(ANNOTATIONS_KEY)).toString('utf8')) as {
    images: { file_name: string }[];
  };
  return {
    images: coco.images.map(({ file_name }) => ({
      key: `${root}/${file_name}`,
      bytes: () => store.get(file_name),
    })),
    reference: { uri: `${root}/${ANNOTATIONS_KEY}`, format: 'coco', ignoreValue: null },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function photoSource(photos: NonNullable<Settings['photos']>, limit: number): ImageSource {
  const root = pathToFileURL(photos.dir).href;
  const names = readdirSync(photos.dir)
    .filter((name) => !name.startsWith('.'))
    .sort()
    .slice(0, limit);
  return {
    images: names.map((name) => ({
      key: `${root}/${name}`,
      bytes: async () => readFileSync(join(photos.dir, name)),
    })),
    reference: { uri: pathToFileURL(photos.labels).href, format: 'png', ignoreValue: photos.ignoreValue },
    cleanup: () => {},
  };
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
  const source = settings.photos
    ? photoSource(settings.photos, settings.images)
    : await synthSource(settings);
  try {
    const stores = new StoreCache();
    const reference = await openReference(stores, source.reference);
    const session = await SamSession.load(settings.model);
    const images = await measureCalibrationImages(session, source.images, reference, stores, {
      pointsPerSide: settings.pointsPerSide,
      onImage: (m) =>
        console.log(
          `image ${m.index + 1}/${source.images.length}: ${m.candidates} candidates, ` +
            `${m.groundTruth} ground-truth masks (${m.seconds.toFixed(1)} s)`,
        ),
    });
    await stores.close();
    if (cache) writeFileSync(cache, JSON.stringify({ key, images }));
    return images;
  } finally {
    source.cleanup();
  }
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
