// The images a calibration (./calibration.ts) is measured on: each image's unfiltered AMG
// candidates against its human masks. Two callers: scripts/calibrate-amg.ts (synthetic scenes, or
// real photos with label images) and the engine, which calibrates every SAM version it promotes on
// the run's evaluation set — the held-out images of the version's training set with the masks
// people accepted on them (`calibrateOnHoldout`).
import { loadHumanMasks, openReference, type ReferenceSet } from '../audit/reference.ts';
import { loadImage } from '../images/image-io.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import type { SamSession } from '../sam/session.ts';
import {
  OFFICIAL_THRESHOLDS,
  calibrate,
  calibrationImage,
  calibrationRecord,
  evaluateThresholds,
  type AmgCalibrationRecord,
  type CalibrationImage,
  type Thresholds,
} from './calibration.ts';
import { AutomaticMaskGenerator } from './generator.ts';

/** The run's evaluation set cannot be calibrated on (no held-out split, no images, no masks for one). */
export class CalibrationInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CalibrationInputError';
  }
}

/** One image to measure: its URI (matched to the reference by file name) and its bytes. */
export interface SourceImage {
  key: string;
  bytes: () => Promise<Uint8Array>;
}

/** What one measured image reports, for progress lines and heartbeats. */
export interface MeasuredImage {
  index: number;
  candidates: number;
  groundTruth: number;
  seconds: number;
}

/** Every image's candidates with both filters and the in-crop NMS off, in the AMG's order. */
export async function measureCalibrationImages(
  session: SamSession,
  images: readonly SourceImage[],
  reference: ReferenceSet,
  stores: StoreCache,
  opts: { pointsPerSide: number; onImage?: (measured: MeasuredImage) => void },
): Promise<CalibrationImage[]> {
  const amg = new AutomaticMaskGenerator(session, {
    pointsPerSide: opts.pointsPerSide,
    predIouThresh: 0,
    stabilityScoreThresh: 0,
    boxNmsThresh: 1,
  });
  // Every image matched before the AMG runs, and the reference read once for all of them.
  for (const source of images) {
    if (!reference.find(source.key))
      throw new CalibrationInputError(`${reference.uri} has no masks for ${source.key}`);
  }
  const entries = await reference.entries(images);
  const measured: CalibrationImage[] = [];
  for (const [index, source] of images.entries()) {
    const started = performance.now();
    const decoded = await loadImage(await source.bytes(), { name: source.key });
    const { masks } = await amg.generate(decoded);
    const image = { key: source.key, w: decoded.width, h: decoded.height };
    const humans = await loadHumanMasks(stores, entries[index]!, image);
    measured.push(
      calibrationImage(
        masks,
        humans.masks.map((m) => m.rle),
        humans.ignore,
      ),
    );
    opts.onImage?.({
      index,
      candidates: masks.length,
      groundTruth: humans.masks.length,
      seconds: (performance.now() - started) / 1000,
    });
  }
  return measured;
}

/** A training set's manifest (lib/stage1/training-set.ts): where its held-out split is. */
interface TrainingSetManifest {
  holdout?: { annotations: string; imagesPrefix: string };
}

/** Thresholds to keep when the images give no basis to choose, and whose they are ("sam v3"). */
export interface InheritedThresholds {
  thresholds: Thresholds;
  from: string;
}

/**
 * Calibrates a model on a run's evaluation set: the held-out split of a training-set manifest in
 * `out` (the run's output store, at `outUri`), at most `maxImages` of its images in their order.
 * The accepted masks are not every object of an image, so precision here is a lower bound and the
 * F1 rule leans to stricter thresholds than an exhaustive reference would give; `measured_on` says so.
 *
 * When no pair keeps a single correct mask (F1 0 everywhere; a weak model on few images), the rule
 * would pick the strictest pair, which keeps nothing: then the `inherit` thresholds are kept with
 * their figures on these images (`inherited_from`), and without any the result is null.
 */
export async function calibrateOnHoldout(
  session: SamSession,
  out: ObjectStore,
  stores: StoreCache,
  opts: {
    outUri: string;
    manifestKey: string;
    maxImages: number;
    pointsPerSide: number;
    inherit?: InheritedThresholds | undefined;
    onImage?: (measured: MeasuredImage) => void;
  },
): Promise<AmgCalibrationRecord | null> {
  const manifest = JSON.parse((await out.get(opts.manifestKey)).toString('utf8')) as TrainingSetManifest;
  if (!manifest.holdout)
    throw new CalibrationInputError(`${out.uri(opts.manifestKey)} has no holdout split to calibrate on`);
  const { annotations, imagesPrefix } = manifest.holdout;
  const coco = JSON.parse((await out.get(annotations)).toString('utf8')) as {
    images: { file_name: string }[];
  };
  const picked = coco.images.slice(0, opts.maxImages);
  if (picked.length === 0)
    throw new CalibrationInputError(`${out.uri(annotations)} holds no images to calibrate on`);
  const reference = await openReference(stores, {
    uri: out.uri(annotations),
    format: 'coco',
    ignoreValue: null,
  });
  const images = picked.map(({ file_name }) => {
    const key = `${imagesPrefix}/${file_name}`;
    return { key: out.uri(key), bytes: () => out.get(key) };
  });
  const measured = await measureCalibrationImages(session, images, reference, stores, opts);
  const { best } = calibrate(measured);
  const noSignal = best.matched === 0;
  if (noSignal && !opts.inherit) return null;
  const chosen = noSignal ? evaluateThresholds(measured, opts.inherit!.thresholds) : best;
  return calibrationRecord(chosen, evaluateThresholds(measured, OFFICIAL_THRESHOLDS), {
    pointsPerSide: opts.pointsPerSide,
    measuredOn:
      `${picked.length} held-out images of ${out.uri(opts.manifestKey)} with the masks annotators accepted ` +
      '(not every object: precision is a lower bound)',
    command: 'the calibrateModelVersion activity of the retrain that promoted this version',
    ...(noSignal ? { inheritedFrom: opts.inherit!.from } : {}),
  });
}
