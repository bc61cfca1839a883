// lib/stage1/simulated-annotator.ts on the reference model: every big-enough intended object gets a
// mask the task workflow would accept, with its clicks, IoU and seconds from the stated model.
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeRle, decompressRle } from '../../lib/rle.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { maskIou } from '../../lib/stage1/click-simulator.ts';
import { annotateImage, DEFAULT_ANNOTATOR } from '../../lib/stage1/simulated-annotator.ts';
import { submissionProblem } from '../../lib/stage1/submission.ts';
import { synthObjects } from '../helpers/synth-objects.ts';

const MODEL = resolve(import.meta.dirname, '../../models/sae-ref');

describe('annotateImage', () => {
  it(
    'annotates each intended object big enough, within the click budget, as valid submissions',
    { timeout: 180_000 },
    async () => {
      const session = await SamSession.load(MODEL);
      const { image, truths, areas } = await synthObjects(5, 6);
      const { height: h, width: w } = image;
      const model = { ...DEFAULT_ANNOTATOR, maxClicks: 3, minArea: 500 };
      const masks = await annotateImage(session, await session.embed(image), truths, h, w, model);

      const bigEnough = areas.flatMap((area, i) => (area >= 500 ? [i] : []));
      expect(masks.map((m) => m.object)).toEqual(bigEnough);
      for (const m of masks) {
        expect(m.clicks).toBeGreaterThanOrEqual(1);
        expect(m.clicks).toBeLessThanOrEqual(3);
        expect(m.seconds).toBe(m.clicks * model.secondsPerClick + model.secondsPerAccept);
        expect(m.iou).toBeCloseTo(maskIou(truths[m.object]!, decodeRle(decompressRle(m.mask))), 12);
        const submission = { annotator: 'sim', submissionId: `m-${m.object}`, ...m };
        expect(submissionProblem(submission, h, w)).toBeUndefined();
      }
      // With a budget, the first big-enough objects, the same masks, and no click on the rest.
      const embedding = await session.embed(image);
      const limited = await annotateImage(session, embedding, truths, h, w, model, 2);
      expect(limited.map((m) => m.object)).toEqual(bigEnough.slice(0, 2));
      expect(limited.map((m) => m.mask)).toEqual(masks.slice(0, 2).map((m) => m.mask));
      const mean = masks.reduce((s, m) => s + m.iou, 0) / masks.length;
      console.log(
        `simulated annotator, ≤ 3 clicks, reference model: ${masks.length} masks, mean IoU ${mean.toFixed(3)}`,
      );
    },
  );
});
