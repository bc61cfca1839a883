// lib/stage1/simulated-annotator.ts on the reference model: every big-enough intended object gets a
// mask the task workflow would accept, with its clicks, IoU and seconds from the stated model.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadImage } from '../../lib/images/image-io.ts';
import { decodeRle, decompressRle, type CocoRle } from '../../lib/rle.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { maskIou } from '../../lib/stage1/click-simulator.ts';
import { annotateImage, DEFAULT_ANNOTATOR } from '../../lib/stage1/simulated-annotator.ts';
import { submissionProblem } from '../../lib/stage1/submission.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';

const MODEL = resolve(import.meta.dirname, '../../models/sae-ref');

describe('annotateImage', () => {
  it(
    'annotates each intended object big enough, within the click budget, as valid submissions',
    { timeout: 180_000 },
    async () => {
      const session = await SamSession.load(MODEL);
      const files = new Map<string, Uint8Array>();
      await generateSynthDataset({ images: 1, seed: 5, write: async (k, b) => void files.set(k, b) });
      const coco = JSON.parse(new TextDecoder().decode(files.get(ANNOTATIONS_KEY)!)) as {
        images: { file_name: string }[];
        annotations: { segmentation: CocoRle; area: number }[];
      };
      const image = await loadImage(files.get(coco.images[0]!.file_name)!);
      const { height: h, width: w } = image;
      const truths = coco.annotations.slice(0, 6).map((a) => decodeRle(decompressRle(a.segmentation)));
      const model = { ...DEFAULT_ANNOTATOR, maxClicks: 3, minArea: 500 };
      const masks = await annotateImage(session, await session.embed(image), truths, h, w, model);

      const bigEnough = coco.annotations.slice(0, 6).flatMap((a, i) => (a.area >= 500 ? [i] : []));
      expect(masks.map((m) => m.object)).toEqual(bigEnough);
      for (const m of masks) {
        expect(m.clicks).toBeGreaterThanOrEqual(1);
        expect(m.clicks).toBeLessThanOrEqual(3);
        expect(m.seconds).toBe(m.clicks * model.secondsPerClick + model.secondsPerAccept);
        expect(m.iou).toBeCloseTo(maskIou(truths[m.object]!, decodeRle(decompressRle(m.mask))), 12);
        const submission = { annotator: 'sim', submissionId: `m-${m.object}`, ...m };
        expect(submissionProblem(submission, h, w)).toBeUndefined();
      }
      const mean = masks.reduce((s, m) => s + m.iou, 0) / masks.length;
      console.log(
        `simulated annotator, ≤ 3 clicks, reference model: ${masks.length} masks, mean IoU ${mean.toFixed(3)}`,
      );
    },
  );
});
