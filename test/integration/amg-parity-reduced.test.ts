// CI's reduced parity run: our AMG (ONNX, TypeScript) against the official segment-anything
// SamAutomaticMaskGenerator (PyTorch) on the same weights and images. The full run is
// `npm run bench:amg-parity`. The weights are a seeded random model (trainer/scripts/random_model.py):
// parity needs identical weights, not good ones, and a random decoder gives large, varied, non-empty
// masks. The IoU and stability filters are off (threshold 0, as the official code reads 0) and NMS
// keeps everything (threshold 1: random masks overlap so much that 0.7 leaves one per image), so
// every prompt's masks are compared; NMS itself is checked against torchvision in
// amg-official-parity.test.ts.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { compareImage, median } from '../../bench/amg-parity.ts';
import { benchImages, PYTHON, ROOT, runOfficial, runOurs } from '../../bench/amg-common.ts';

const open = { predIouThresh: 0, stabilityScoreThresh: 0, boxNmsThresh: 1, cropNmsThresh: 1 };
// Synthetic images and a GrabCut photo on the whole image; one image with a crop layer (5 crops).
const cases = [
  { cropNLayers: 0, pointsPerSide: 6, synthetic: 2, real: 1 },
  { cropNLayers: 1, pointsPerSide: 4, synthetic: 1, real: 0 },
];

describe('AMG parity with the official implementation (reduced)', () => {
  let pkg: string;
  beforeAll(async () => {
    pkg = join(mkdtempSync(join(tmpdir(), 'sae-random-model-')), 'pkg');
    await promisify(execFile)(
      PYTHON,
      [join(ROOT, 'trainer/scripts/random_model.py'), '--out', pkg, '--seed', '0'],
      {
        env: { ...process.env, PYTHONPATH: join(ROOT, 'trainer'), SAE_TORCH_THREADS: '1' },
      },
    );
  });

  for (const { cropNLayers, pointsPerSide, synthetic, real } of cases) {
    it(`matches masks and counts with cropNLayers ${cropNLayers}`, async () => {
      const paths = await benchImages(synthetic, real);
      const settings = { ...open, cropNLayers, pointsPerSide };
      const official = await runOfficial(paths, settings, join(pkg, 'checkpoint.pt'), 1);
      const ours = await runOurs(paths, settings, pkg);
      let oursTotal = 0;
      let officialTotal = 0;
      let nonEmpty = 0;
      const ious: number[] = [];
      paths.forEach((_, i) => {
        const parity = compareImage(ours.annotations[i]!, official.records[i]!);
        oursTotal += parity.ours;
        officialTotal += parity.official;
        ious.push(...parity.matchedIous);
        nonEmpty += official.records[i]!.filter((r) => r.area > 0).length;
      });
      console.log(
        `cropNLayers ${cropNLayers}: ours ${oursTotal} masks, official ${officialTotal} (${nonEmpty} non-empty), ` +
          `median matched IoU ${median(ious).toFixed(4)}`,
      );
      expect(nonEmpty).toBeGreaterThan(0);
      expect(Math.abs(oursTotal - officialTotal) / officialTotal).toBeLessThanOrEqual(0.05);
      expect(median(ious)).toBeGreaterThanOrEqual(0.98);
    });
  }
});
