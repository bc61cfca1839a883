import { describe, expect, it } from 'vitest';
import {
  computeFigures,
  countSummary,
  histogramBin,
  iouFigures,
  sizeClass,
} from '../../lib/audit/figures.ts';
import { evaluateGate } from '../../lib/audit/gate.ts';

const human = (bestIou: number, area = 5000, pairIou = bestIou) => ({ bestIou, pairIou, area });
const noGate = { minShareAbove090: null, minShareAbove075: null, minMeanIou: null };

describe('iouFigures', () => {
  it('counts shares strictly above 0.90 and 0.75, and recall at or above each threshold', () => {
    const f = iouFigures([human(0.9), human(0.95), human(0.75), human(0.5), human(1)]);
    expect(f.humanMasks).toBe(5);
    expect(f.shareAbove090).toBe(2 / 5); // 0.9 itself is not above 0.90
    expect(f.shareAbove075).toBe(3 / 5);
    expect(f.recall).toEqual({ at050: 1, at075: 4 / 5, at090: 3 / 5 });
    expect(f.meanIou).toBeCloseTo((0.9 + 0.95 + 0.75 + 0.5 + 1) / 5, 14);
    expect(f.medianIou).toBe(0.9);
  });

  it('uses the one-to-one IoU for recall, the best IoU for the shares', () => {
    const f = iouFigures([human(0.95, 5000, 0), human(0.95, 5000, 0.95)]);
    expect(f.shareAbove090).toBe(1);
    expect(f.recall.at050).toBe(0.5);
  });

  it('has no figures rather than zeros when there is nothing to measure', () => {
    const f = iouFigures([]);
    expect([f.meanIou, f.medianIou, f.shareAbove090, f.recall.at050]).toEqual([null, null, null, null]);
    expect(f.histogram.every((b) => b.count === 0)).toBe(true);
  });

  it('puts IoUs in 20 bins over [0, 1], edges in the upper bin and 1 in the last', () => {
    const f = iouFigures([0, 0.05, 0.1, 0.7, 0.75, 0.9, 0.949, 0.95, 1].map((v) => human(v)));
    expect(f.histogram).toHaveLength(20);
    expect(f.histogram[0]).toEqual({ from: 0, to: 0.05, count: 1 });
    expect(f.histogram.map((b) => b.count)).toEqual([
      1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 2,
    ]);
    for (const v of [0.15, 0.3, 0.35, 0.55, 0.6, 0.85, 0.9]) expect(histogramBin(v)).toBe(Math.round(v * 20));
  });
});

describe('computeFigures', () => {
  it('breaks figures down by COCO size class and computes precision from the automatic masks', () => {
    const humans = [human(1, 100), human(0.8, 32 * 32), human(0.6, 96 * 96 - 1), human(0.95, 96 * 96)];
    const autos = [
      { pairIou: 1, area: 100 },
      { pairIou: 0.8, area: 2000 },
      { pairIou: 0.4, area: 2000 },
      { pairIou: 0, area: 50 },
    ];
    const f = computeFigures(humans, autos, false);
    expect(f.bySize.small.humanMasks).toBe(1);
    expect(f.bySize.medium.humanMasks).toBe(2);
    expect(f.bySize.large.humanMasks).toBe(1);
    expect(f.bySize.medium.meanIou).toBeCloseTo(0.7, 14);
    expect(f.precision).toMatchObject({
      automaticMasks: 4,
      matchedAt050: 2,
      precisionAt050: 0.5,
      meaningful: false,
    });
    expect(f.precision.bySize.small).toEqual({ automaticMasks: 2, matchedAt050: 1, precisionAt050: 0.5 });
    expect(f.precision.bySize.large.precisionAt050).toBeNull();
    expect(computeFigures(humans, autos, true).precision.meaningful).toBe(true);
  });

  it('classifies areas as COCO does: small < 32², medium < 96², large otherwise', () => {
    expect([0, 1023, 1024, 9215, 9216].map(sizeClass)).toEqual([
      'small',
      'small',
      'medium',
      'medium',
      'large',
    ]);
  });
});

describe('evaluateGate', () => {
  const figures = iouFigures([human(0.95), human(0.83), human(0.5), human(0.92)]); // >0.90: 50%, >0.75: 75%

  it('passes when no threshold is set', () => {
    expect(evaluateGate(figures, noGate)).toEqual({ passed: true, failures: [] });
  });

  it('lists every failed threshold with the figure and the gate', () => {
    const result = evaluateGate(figures, { minShareAbove090: 0.9, minShareAbove075: 0.97, minMeanIou: 0.5 });
    expect(result.passed).toBe(false);
    expect(result.failures).toEqual([
      'share of IoU > 0.90 is 50.0%, below the gate 90.0%',
      'share of IoU > 0.75 is 75.0%, below the gate 97.0%',
    ]);
    expect(evaluateGate(figures, { ...noGate, minMeanIou: 0.9 }).failures).toEqual([
      'mean IoU is 0.800, below the gate 0.900',
    ]);
  });

  it('shows more digits when the rounded figure would equal the gate', () => {
    const result = evaluateGate(figures, { ...noGate, minShareAbove090: 0.5004 });
    expect(result.failures).toEqual(['share of IoU > 0.90 is 50.00%, below the gate 50.04%']);
  });

  it('fails a configured gate when there were no human masks at all', () => {
    const result = evaluateGate(iouFigures([]), { ...noGate, minMeanIou: 0.5 });
    expect(result.failures).toEqual([
      'mean IoU has no value (no human masks were audited), the gate is 0.500',
    ]);
  });
});

describe('countSummary', () => {
  it('summarises masks per image with the paper bins', () => {
    const s = countSummary([0, 3, 10, 11, 250]);
    expect(s).toMatchObject({ min: 0, max: 250, median: 10 });
    expect(s.histogram.map((b) => b.count)).toEqual([1, 2, 1, 0, 0, 1]);
    expect(countSummary([])).toMatchObject({ mean: null, min: null, max: null });
  });
});
