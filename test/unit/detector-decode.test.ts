import { describe, expect, it } from 'vitest';
import { decodeDetections, frameScale, type DetectorMaps } from '../../lib/detector/decode.ts';

/** Maps of an 8×8 grid holding the given peaks (score, cell [i, j], box in the model frame). */
function mapsWith(
  peaks: [number, [number, number], [number, number, number, number]][],
  grid = 8,
): DetectorMaps {
  const scores = new Float32Array(grid * grid);
  const boxes = new Float32Array(4 * grid * grid);
  for (const [score, [i, j], box] of peaks) {
    scores[i * grid + j] = score;
    box.forEach((v, k) => (boxes[k * grid * grid + i * grid + j] = v));
  }
  return { scores, boxes, grid };
}

const settings = { scoreThreshold: 0.1, nmsIou: 0.5, maxDetections: 100 };

// The same case as trainer/tests/test_detector.py, so the two decoders are held to one answer.
describe('decodeDetections', () => {
  it('keeps peaks, scales, clips, drops degenerate boxes and suppresses overlaps', () => {
    const maps = mapsWith([
      [0.9, [1, 1], [0, 0, 40, 40]],
      [0.8, [5, 5], [2, 2, 42, 42]], // overlaps the first: suppressed
      [0.7, [3, 6], [90, 40, 160, 80]], // past the right edge: clipped
      [0.6, [6, 1], [10, 100, 10.2, 120]], // under a pixel wide once scaled: dropped
      [0.05, [7, 7], [0, 0, 8, 8]], // under the threshold
    ]);
    const found = decodeDetections(maps, 2, [60, 64], settings);
    expect(found.map((d) => d.score)).toEqual([Math.fround(0.9), Math.fround(0.7)]);
    expect(found.map((d) => d.box)).toEqual([
      [0, 0, 20, 20],
      [45, 20, 64, 40],
    ]);
  });

  it('takes only local maxima', () => {
    const maps = mapsWith([
      [0.9, [2, 2], [0, 0, 10, 10]],
      [0.8, [2, 3], [50, 50, 60, 60]],
    ]);
    expect(decodeDetections(maps, 1, [128, 128], settings).map((d) => d.box)).toEqual([[0, 0, 10, 10]]);
  });

  it('keeps at most maxDetections, best first, and finds nothing in an empty map', () => {
    const maps = mapsWith([
      [0.5, [0, 0], [0, 0, 10, 10]],
      [0.7, [0, 4], [60, 0, 70, 10]],
      [0.6, [4, 0], [0, 60, 10, 70]],
    ]);
    const found = decodeDetections(maps, 1, [128, 128], { ...settings, maxDetections: 2 });
    expect(found.map((d) => d.score)).toEqual([Math.fround(0.7), Math.fround(0.6)]);
    expect(decodeDetections(mapsWith([]), 1, [128, 128], settings)).toEqual([]);
  });

  it('scales by the resize to the longest side', () => {
    expect(frameScale(1024, [480, 640])).toBe(1.6);
    expect(frameScale(1024, [2048, 1000])).toBe(0.5);
  });
});
