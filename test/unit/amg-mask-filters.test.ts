import { describe, expect, it } from 'vitest';
import {
  exceedsCoverage,
  isBoxNearCropEdge,
  maskBox,
  maskCandidatesFromBatch,
  passesIouThresh,
  passesStabilityThresh,
  rleBox,
  stabilityFromCounts,
  stabilityScore,
} from '../../lib/amg/mask-filters.ts';
import { planMaskUpsample, upsampleMaskLogits } from '../../lib/amg/mask-upsample.ts';
import type { Box, DecoderBatch } from '../../lib/amg/types.ts';
import { decodeRle, encodeMask, rleArea } from '../../lib/rle.ts';

const f = Math.fround;

describe('score thresholds compare in float32, like torch', () => {
  it('predicted IoU: strictly greater; 0 turns the filter off', () => {
    expect(passesIouThresh(f(0.9), 0.88)).toBe(true);
    expect(passesIouThresh(f(0.88), 0.88)).toBe(false);
    expect(passesIouThresh(f(0.5), 0)).toBe(true);
  });

  it('stability: ≥ float32(thresh), so a score equal to float32(0.95) < 0.95 passes; NaN fails', () => {
    expect(f(0.95)).toBeLessThan(0.95);
    expect(passesStabilityThresh(f(0.95), 0.95)).toBe(true);
    expect(passesStabilityThresh(stabilityFromCounts(19, 20), 0.95)).toBe(true);
    expect(passesStabilityThresh(stabilityFromCounts(189, 200), 0.95)).toBe(false);
    expect(passesStabilityThresh(NaN, 0.95)).toBe(false);
    expect(passesStabilityThresh(NaN, 0)).toBe(true); // the official code skips the filter at 0
  });

  it('stability score: #{L > 1} / #{L > −1} as float32, NaN for 0/0', () => {
    expect(stabilityScore(Float32Array.from([2, 1, 0.5, -0.5, -1, -3]))).toBe(f(1 / 4));
    expect(stabilityScore(Float32Array.from([5, 6]))).toBe(1);
    expect(stabilityScore(Float32Array.from([-1, -2]))).toBeNaN();
    expect(stabilityScore(Float32Array.from([0.6, 0.2, -0.2, -0.7]), 0.5)).toBe(f(1 / 3));
    expect(stabilityFromCounts(1, 3)).toBe(f(1 / 3));
  });
});

describe('maskBox (batched_mask_to_box)', () => {
  const grid = (rows: number[][]) => ({
    data: Uint8Array.from(rows.flat()),
    h: rows.length,
    w: rows[0]!.length,
    order: 'row-major' as const,
  });

  it('gives inclusive XYXY boxes', () => {
    expect(
      maskBox(
        grid([
          [0, 0, 0, 0],
          [0, 1, 0, 0],
          [0, 0, 1, 0],
        ]),
      ),
    ).toEqual([1, 1, 2, 2]);
    expect(maskBox(grid([[0, 0, 1]]))).toEqual([2, 0, 2, 0]);
  });

  it('gives [0, 0, 0, 0] for an empty mask (and for a lone pixel at the origin)', () => {
    expect(maskBox(grid([[0, 0], [0, 0]]))).toEqual([0, 0, 0, 0]); // prettier-ignore
    expect(maskBox(grid([[1, 0], [0, 0]]))).toEqual([0, 0, 0, 0]); // prettier-ignore
  });

  it('thresholds logits at > 0 and reads column-major masks', () => {
    const logits = { data: Float32Array.from([0, -1, 0.1, 0]), h: 2, w: 2, order: 'row-major' as const };
    expect(maskBox(logits)).toEqual([0, 1, 0, 1]);
    // [[0, 1, 1], [0, 1, 0]] in column-major order
    expect(maskBox({ data: Uint8Array.from([0, 0, 1, 1, 1, 0]), h: 2, w: 3, order: 'column-major' })).toEqual(
      [1, 0, 2, 1],
    );
  });

  it('searches only a given window', () => {
    const g = grid([
      [0, 0, 0, 0],
      [0, 1, 1, 0],
      [0, 0, 1, 0],
    ]);
    expect(maskBox(g, 0, [1, 1, 2, 2])).toEqual([1, 1, 2, 2]);
    expect(maskBox(g, 0, [2, 0, 3, 2])).toEqual([2, 1, 2, 2]);
    expect(maskBox(g, 0, [0, 0, 0, 2])).toEqual([0, 0, 0, 0]);
  });

  it('agrees with rleBox on the same mask', () => {
    const data = Uint8Array.from([0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0]);
    expect(rleBox(encodeMask(data, 3, 4))).toEqual(maskBox({ data, h: 3, w: 4, order: 'row-major' }));
    expect(rleBox(encodeMask(new Uint8Array(12), 3, 4))).toEqual([0, 0, 0, 0]);
  });
});

describe('isBoxNearCropEdge', () => {
  const image: Box = [0, 0, 2250, 1500];

  it('never fires for the whole-image crop', () => {
    expect(isBoxNearCropEdge([0, 0, 2249, 1499], [0, 0, 2250, 1500], image)).toBe(false);
    expect(isBoxNearCropEdge([5, 5, 10, 10], [0, 0, 2250, 1500], image)).toBe(false);
  });

  it('fires within 20 px of an inner crop edge (box in crop frame), not of an image edge', () => {
    const crop: Box = [869, 494, 2250, 1500]; // bottom-right crop of the worked example
    expect(isBoxNearCropEdge([20, 100, 200, 300], crop, image)).toBe(true); // x0 20 px from the crop's left edge
    expect(isBoxNearCropEdge([21, 21, 200, 300], crop, image)).toBe(false);
    expect(isBoxNearCropEdge([100, 100, 1380, 1005], crop, image)).toBe(false); // right/bottom are image edges
    expect(isBoxNearCropEdge([0, 0, 0, 0], crop, image)).toBe(true); // an empty mask's box
  });
});

describe('exceedsCoverage (paper filter)', () => {
  it('drops masks covering ≥ the fraction of the image; 1 turns it off', () => {
    const rle = encodeMask(
      Uint8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]),
      4,
      5,
    );
    expect(exceedsCoverage(rle, 0.95)).toBe(true); // 19/20 = 0.95
    expect(exceedsCoverage(rle, 0.96)).toBe(false);
    expect(exceedsCoverage(rle, 1)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

/** Low-res logits of one ellipse in the 256 grid: amp·(1 − q), stability ≈ (1 − 1/amp)/(1 + 1/amp). */
function ellipse(cx: number, cy: number, rx: number, ry: number, amp = 100): Float32Array {
  const out = new Float32Array(65536);
  for (let y = 0; y < 256; y++) {
    for (let x = 0; x < 256; x++) out[y * 256 + x] = amp * (1 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2);
  }
  return out;
}

function batchOf(masks: Float32Array[], ious: number[]): DecoderBatch {
  const lowRes = new Float32Array(masks.length * 65536);
  masks.forEach((m, i) => lowRes.set(m, i * 65536));
  return { count: 1, iou: Float32Array.from(ious), lowRes };
}

describe('maskCandidatesFromBatch', () => {
  // A 100×150 crop at (150, 50) of a 400×600 image: the crop is scaled 1024/150 into the model.
  const cropBox: Box = [150, 50, 300, 150];
  const crop = { cropBox, imageSize: [400, 600] as [number, number], plan: planMaskUpsample(100, 150) };
  const point = Float64Array.from([75, 50]);

  it('applies the filters in order and moves survivors into the image frame', () => {
    const good = ellipse(90, 60, 30, 20); // centred, well inside the crop
    const batch = batchOf([good, good, ellipse(2, 60, 30, 20)], [0.95, 0.5, 0.99]);
    const out = maskCandidatesFromBatch(batch, point, crop);
    // mask 1 fails the IoU filter, mask 2 touches the crop's inner left edge.
    expect(out).toHaveLength(1);
    const [m] = out;
    const logits = upsampleMaskLogits(good, crop.plan).data;
    const cropMask = logits.map((v) => (v > 0 ? 1 : 0));
    const expectedBox = maskBox({ data: cropMask, h: 100, w: 150, order: 'row-major' });
    expect(m!.box).toEqual([
      expectedBox[0] + 150,
      expectedBox[1] + 50,
      expectedBox[2] + 150,
      expectedBox[3] + 50,
    ]);
    expect(m!.predictedIou).toBe(f(0.95));
    expect(m!.stabilityScore).toBe(stabilityScore(logits));
    expect(m!.point).toEqual([225, 100]);
    expect(m!.cropBox).toEqual(cropBox);
    expect(m!.rle.size).toEqual([400, 600]);
    expect(rleArea(m!.rle)).toBe(cropMask.reduce((a, b) => a + b, 0));
    const full = decodeRle(m!.rle);
    expect(full[(50 + 40) * 600 + 150 + 50]).toBe(cropMask[40 * 150 + 50]);
  });

  it('drops unstable masks (a shallow ramp) and keeps them when the threshold is 0', () => {
    const shallow = ellipse(90, 60, 30, 20, 1.5);
    expect(maskCandidatesFromBatch(batchOf([shallow], [0.99]), point, crop)).toHaveLength(0);
    expect(
      maskCandidatesFromBatch(batchOf([shallow], [0.99]), point, crop, { stabilityScoreThresh: 0 }),
    ).toHaveLength(1);
  });

  it('takes a subset of each point’s masks (the ONNX decoder’s 4 outputs start with the single mask)', () => {
    const good = ellipse(90, 60, 30, 20);
    const batch = batchOf([good, good, good, good], [0.99, 0.9, 0.91, 0.92]);
    const out = maskCandidatesFromBatch(batch, point, crop, {}, [1, 2, 3]);
    expect(out.map((m) => m.predictedIou)).toEqual([f(0.9), f(0.91), f(0.92)]);
  });

  it('checks the batch shapes', () => {
    const batch = batchOf([ellipse(90, 60, 30, 20)], [0.99]);
    expect(() => maskCandidatesFromBatch(batch, Float64Array.from([1, 2, 3, 4]), crop)).toThrow(RangeError);
    expect(() => maskCandidatesFromBatch({ ...batch, lowRes: new Float32Array(10) }, point, crop)).toThrow(
      RangeError,
    );
  });
});

describe('measurements', () => {
  it('ms per kept mask through the whole chain (upsample, stability, box, edge test, RLE)', () => {
    const lines: string[] = [];
    for (const [h, w] of [
      [1500, 2250],
      [683, 1024],
    ] as const) {
      const c = {
        cropBox: [0, 0, w, h] as Box,
        imageSize: [h, w] as [number, number],
        plan: planMaskUpsample(h, w),
      };
      const masks = [ellipse(128, 60, 40, 25), ellipse(100, 90, 80, 60), ellipse(160, 70, 15, 10)];
      const batch = batchOf(masks, [0.95, 0.95, 0.95]);
      const pt = Float64Array.from([1, 1]);
      maskCandidatesFromBatch(batch, pt, c);
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const t = performance.now();
        expect(maskCandidatesFromBatch(batch, pt, c)).toHaveLength(3);
        best = Math.min(best, performance.now() - t);
      }
      lines.push(`${h}×${w}: ${(best / 3).toFixed(1)} ms per mask`);
    }
    console.log(`[mask filters] best of 3 on this machine:\n  ${lines.join('\n  ')}`);
  });
});
