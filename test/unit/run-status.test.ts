// `sa-engine status`: a retrain's line says which AMG thresholds its promoted version carries for
// stage 3's `thresholds: model`: measured, kept from its parent (the held-out images gave no basis
// to choose), or none.
import { describe, expect, it } from 'vitest';
import { describeRunResult } from '../../client/run-status.ts';
import type { DatasetRunResult } from '../../workflows/dataset-run.ts';
import type { RetrainResult } from '../../workflows/retrain.ts';

function retrainLine(amgCalibration: RetrainResult['amgCalibration']): string {
  const result = {
    stage1: [],
    retrains: [
      {
        workflowId: 'r/retrain-1',
        trigger: 'stage 1 after round 1: 160 new masks in the run (≥ 1)',
        trainingSet: 'runs/r/stage1/training/set-1/manifest.json',
        result: {
          version: 2,
          promoted: true,
          reason: 'promoted',
          miou1: 0.191,
          ...(amgCalibration !== undefined ? { amgCalibration } : {}),
        },
      },
    ],
  } as unknown as DatasetRunResult;
  const line = describeRunResult(result).find((l) => l.includes('r/retrain-1'));
  if (line === undefined) throw new Error('no retrain line');
  return line;
}

describe('a retrain in sa-engine status', () => {
  it('names the promoted version thresholds, whose they are, or that it has none', () => {
    expect(retrainLine(undefined)).toBe('  retrain  r/retrain-1: v2, 1-click mIoU 0.191; promoted');
    expect(retrainLine({ predIouThresh: 0.3, stabilityScoreThresh: 0.5 })).toBe(
      '  retrain  r/retrain-1: v2, 1-click mIoU 0.191; promoted; AMG thresholds 0.3 / 0.5',
    );
    expect(retrainLine({ predIouThresh: 0.26, stabilityScoreThresh: 0.45, inheritedFrom: 'sam v1' })).toBe(
      '  retrain  r/retrain-1: v2, 1-click mIoU 0.191; promoted; AMG thresholds 0.26 / 0.45 ' +
        "(sam v1's: no pair kept a correct mask on the held-out images)",
    );
    expect(retrainLine(null)).toBe(
      '  retrain  r/retrain-1: v2, 1-click mIoU 0.191; promoted; no AMG thresholds ' +
        '(no pair kept a correct mask on the held-out images)',
    );
  });
});
