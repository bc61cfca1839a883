// lib/sam/model-package.ts: model.json's AMG calibration (scripts/calibrate-amg.ts) is read and
// checked, and `resolveAmgThresholds` picks a run's thresholds from the config or from it.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ModelPackageError,
  readModelPackage,
  resolveAmgThresholds,
  withAmgCalibration,
} from '../../lib/sam/model-package.ts';

const REFERENCE = resolve(import.meta.dirname, '../../models/sae-ref');

const CALIBRATION = {
  pred_iou_thresh: 0.24,
  stability_score_thresh: 0.4,
  points_per_side: 16,
  measured_on: 'sa-engine synth --images 20 --seed 7777',
  rule: 'highest F1',
  figures: { precision: 0.2, recall: 0.1 },
};

let dir: string;
let base: Record<string, unknown>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sae-model-package-'));
  base = JSON.parse(await readFile(join(REFERENCE, 'model.json'), 'utf8')) as Record<string, unknown>;
  delete base.amg_calibration;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function packageWith(extra: Record<string, unknown>): Promise<string> {
  const folder = await mkdtemp(join(dir, 'pkg-'));
  await writeFile(join(folder, 'model.json'), JSON.stringify({ ...base, ...extra }));
  return folder;
}

describe('amg_calibration', () => {
  it('is null when model.json has none', async () => {
    expect((await readModelPackage(await packageWith({}))).amgCalibration).toBeNull();
  });

  it('is read with its figures', async () => {
    const pkg = await readModelPackage(await packageWith({ amg_calibration: CALIBRATION }));
    expect(pkg.amgCalibration).toEqual({
      predIouThresh: 0.24,
      stabilityScoreThresh: 0.4,
      pointsPerSide: 16,
      measuredOn: 'sa-engine synth --images 20 --seed 7777',
      rule: 'highest F1',
      figures: { precision: 0.2, recall: 0.1 },
    });
  });

  it('refuses a malformed calibration, naming the field', async () => {
    const folder = await packageWith({ amg_calibration: { ...CALIBRATION, pred_iou_thresh: 1.5 } });
    await expect(readModelPackage(folder)).rejects.toThrow(/amg_calibration\.pred_iou_thresh/);
  });

  it('is in the reference model, measured on held-out images', async () => {
    const { amgCalibration } = await readModelPackage(REFERENCE);
    expect(amgCalibration).not.toBeNull();
    expect(amgCalibration!.measuredOn).toMatch(/--seed 7777/);
    // Below the official thresholds, which sae-ref never passes.
    expect(amgCalibration!.predIouThresh).toBeLessThan(0.88);
  });
});

describe('resolveAmgThresholds', () => {
  it("official: the config's values, or SAM's defaults", async () => {
    const pkg = await readModelPackage(await packageWith({ amg_calibration: CALIBRATION }));
    expect(
      resolveAmgThresholds(pkg, { thresholds: 'official', predIouThresh: 0.5, stabilityScoreThresh: 0.6 }),
    ).toEqual({
      predIouThresh: 0.5,
      stabilityScoreThresh: 0.6,
    });
    expect(resolveAmgThresholds(pkg, {})).toEqual({ predIouThresh: 0.88, stabilityScoreThresh: 0.95 });
  });

  it("model: the package's calibration", async () => {
    const pkg = await readModelPackage(await packageWith({ amg_calibration: CALIBRATION }));
    expect(resolveAmgThresholds(pkg, { thresholds: 'model', predIouThresh: null })).toEqual({
      predIouThresh: 0.24,
      stabilityScoreThresh: 0.4,
    });
  });

  it('model without a calibration: a ModelPackageError naming the config field and the model.json field', async () => {
    const pkg = await readModelPackage(await packageWith({}));
    const attempt = () => resolveAmgThresholds(pkg, { thresholds: 'model' });
    expect(attempt).toThrow(ModelPackageError);
    expect(attempt).toThrow(/stage3\.thresholds is "model".*has no amg_calibration/);
  });
});

describe('withAmgCalibration', () => {
  // As the trainer's export writes it: Python's json module, indent 2, no final newline.
  const python =
    '{\n  "format": "sa-engine-model/1",\n  "diff": 5.3e-05,\n  "zero": 0.0,\n  "name": "caf\\u00e9"\n}';

  it('appends the calibration and keeps every byte before it', () => {
    const text = withAmgCalibration(python, CALIBRATION);
    expect(text.startsWith(python.slice(0, -2))).toBe(true);
    expect(JSON.parse(text)).toEqual({ ...(JSON.parse(python) as object), amg_calibration: CALIBRATION });
  });

  it('replaces an earlier calibration in place', () => {
    const once = withAmgCalibration(python, CALIBRATION);
    const twice = withAmgCalibration(once, { ...CALIBRATION, pred_iou_thresh: 0.5 });
    expect(
      (JSON.parse(twice) as { amg_calibration: { pred_iou_thresh: number } }).amg_calibration.pred_iou_thresh,
    ).toBe(0.5);
    expect(twice.startsWith(python.slice(0, -2))).toBe(true);
  });

  it('refuses a model.json whose calibration is not its last field', () => {
    const middle = '{\n  "amg_calibration": {"a": 1},\n  "format": "sa-engine-model/1"\n}';
    expect(() => withAmgCalibration(middle, CALIBRATION)).toThrow(ModelPackageError);
  });
});
