// lib/amg/calibration.ts: evaluating filter thresholds on unfiltered candidates gives what the AMG
// gives at those thresholds, the figures count what they say, and the rule picks the best F1.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  calibrate,
  calibrationImage,
  evaluateThresholds,
  keptAt,
  type CalibrationImage,
} from '../../lib/amg/calibration.ts';
import { AutomaticMaskGenerator } from '../../lib/amg/generator.ts';
import { loadImage } from '../../lib/images/image-io.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';
import type { Box } from '../../lib/amg/types.ts';

const MODEL = resolve(import.meta.dirname, '../../models/sae-ref');

/** Three candidates on one image with two ground-truth masks. */
function image(): CalibrationImage {
  const far = (x: number): Box => [x, 0, x + 10, 10];
  return {
    predictedIou: [0.9, 0.5, 0.3],
    stabilityScore: [0.9, 0.9, 0.2],
    box: [far(0), far(100), far(200)],
    // candidate 0 matches GT 0 well, candidate 1 overlaps GT 1 poorly, candidate 2 matches GT 1.
    iou: [
      [0.8, 0],
      [0, 0.3],
      [0, 0.7],
    ],
    groundTruth: 2,
  };
}

describe('evaluateThresholds', () => {
  it('counts kept masks whose one-to-one partner has IoU >= 0.5', () => {
    const open = evaluateThresholds([image()], { predIouThresh: 0, stabilityScoreThresh: 0 });
    expect(open).toMatchObject({ masks: 3, matched: 2, groundTruth: 2, precision: 2 / 3, recall: 1 });
    expect(open.meanBestIou).toBeCloseTo((0.8 + 0.7) / 2);
    // predicted IoU > 0.4 keeps candidates 0 and 1: one match.
    const strict = evaluateThresholds([image()], { predIouThresh: 0.4, stabilityScoreThresh: 0 });
    expect(strict).toMatchObject({ masks: 2, matched: 1, precision: 0.5, recall: 0.5 });
    expect(strict.meanBestIou).toBeCloseTo((0.8 + 0.3) / 2);
    // stability >= 0.5 drops candidate 2 the same way.
    expect(evaluateThresholds([image()], { predIouThresh: 0, stabilityScoreThresh: 0.5 }).matched).toBe(1);
  });

  it('applies the NMS: a duplicate box with a lower predicted IoU is suppressed', () => {
    const dup = image();
    dup.box[2] = [0, 0, 10, 10]; // same box as candidate 0, lower score
    expect(keptAt(dup, { predIouThresh: 0, stabilityScoreThresh: 0 })).toEqual([0, 1]);
  });
});

describe('calibrate', () => {
  it('picks the highest F1, the stricter pair on ties', () => {
    const { best } = calibrate([image()]);
    // Keeping everything is F1 0.8 (P 2/3, R 1); every stricter pair loses candidate 2 or keeps less.
    expect(best.f1).toBeCloseTo(0.8);
    // Ties: any predIouThresh below 0.3 and stability up to 0.2 keep all three; the strictest is chosen.
    expect(best).toMatchObject({ predIouThresh: 0.28, stabilityScoreThresh: 0.2 });
  });

  it('refuses an empty image set', () => {
    expect(() => calibrate([])).toThrow(/no images/);
  });
});

describe('on the reference model', () => {
  it('keptAt equals running the AMG at those thresholds', { timeout: 180_000 }, async () => {
    const files = new Map<string, Uint8Array>();
    await generateSynthDataset({ images: 2, seed: 7777, write: async (k, b) => void files.set(k, b) });
    const decoded = await loadImage(files.get('images/synth-000002.jpg')!);
    const session = await SamSession.load(MODEL);
    const run = (settings: object) =>
      new AutomaticMaskGenerator(session, { pointsPerSide: 4, ...settings }).generate(decoded);
    const all = await run({ predIouThresh: 0, stabilityScoreThresh: 0, boxNmsThresh: 1 });
    const cal = calibrationImage(all.masks, []);
    for (const t of [
      { predIouThresh: 0.2, stabilityScoreThresh: 0.3 },
      { predIouThresh: 0, stabilityScoreThresh: 0 },
    ]) {
      const direct = await run(t);
      const kept = keptAt(cal, t).map((c) => all.masks[c]!);
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.map((m) => m.rle)).toEqual(direct.masks.map((m) => m.rle));
      expect(kept.map((m) => m.predictedIou)).toEqual(direct.masks.map((m) => m.predictedIou));
    }
  });
});
