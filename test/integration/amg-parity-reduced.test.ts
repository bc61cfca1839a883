// CI's reduced parity run: our AMG (ONNX, TypeScript) against the official segment-anything
// SamAutomaticMaskGenerator (PyTorch) on the same weights (models/sae-ref/checkpoint.pt and the
// ONNX exported from it) and images. The full run is `npm run bench:amg-parity`.
// The IoU and stability filters are off (threshold 0, as the official code reads 0) so that the
// comparison covers every mask even while the reference model is weak; NMS, the crop-edge filter,
// crops and the records are the official defaults. (The official generator also crashes on a
// multi-crop image where no mask survives, another reason to keep masks.)
import { describe, expect, it } from 'vitest';
import { compareImage, median } from '../../bench/amg-parity.ts';
import { benchImages, runOfficial, runOurs } from '../../bench/amg-common.ts';

const open = { predIouThresh: 0, stabilityScoreThresh: 0 };
// Two synthetic images and a GrabCut photo on the whole image; one image with a crop layer (5 crops).
const cases = [
  { cropNLayers: 0, pointsPerSide: 6, synthetic: 2, real: 1 },
  { cropNLayers: 1, pointsPerSide: 4, synthetic: 1, real: 0 },
];

describe('AMG parity with the official implementation (reduced)', () => {
  for (const { cropNLayers, pointsPerSide, synthetic, real } of cases) {
    it(`matches masks and counts with cropNLayers ${cropNLayers}`, async () => {
      const paths = await benchImages(synthetic, real);
      const settings = { ...open, cropNLayers, pointsPerSide };
      const official = await runOfficial(paths, settings, undefined, 1);
      const ours = await runOurs(paths, settings);
      let oursTotal = 0;
      let officialTotal = 0;
      const ious: number[] = [];
      paths.forEach((_, i) => {
        const parity = compareImage(ours.annotations[i]!, official.records[i]!);
        oursTotal += parity.ours;
        officialTotal += parity.official;
        ious.push(...parity.matchedIous);
      });
      console.log(
        `cropNLayers ${cropNLayers}: ours ${oursTotal} masks, official ${officialTotal}, median matched IoU ${median(ious).toFixed(4)}`,
      );
      expect(officialTotal).toBeGreaterThan(0);
      expect(Math.abs(oursTotal - officialTotal) / officialTotal).toBeLessThanOrEqual(0.05);
      expect(median(ious)).toBeGreaterThanOrEqual(0.98);
    });
  }
});
