// lib/training/contract.ts is the one contract of the training activities: the JSON Schema the
// Python worker validates against is generated from it and must not be stale, and the gate that
// decides promotions reads the evaluation figures it defines.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { detectorGateDecision, gateDecision } from '../../lib/models/gate.ts';
import {
  TrainSamInputSchema,
  type EvaluateDetectorResult,
  type EvaluateSamResult,
} from '../../lib/training/contract.ts';
import { CONTRACT_JSON, contractJsonText } from '../../scripts/gen-trainer-contract.ts';

describe('the training contract', () => {
  it('is what trainer/sae_trainer/contract.schema.json holds (else: npm run gen:contract)', () => {
    expect(readFileSync(CONTRACT_JSON, 'utf8')).toBe(contractJsonText());
  });

  it('refuses fields it does not define, so a misspelled setting is not silently dropped', () => {
    const input = {
      storage: 'file:///d',
      trainingSet: 'm.json',
      registry: 'file:///r',
      modelName: 'sam',
      version: 1,
      mode: 'decoder',
      steps: 10,
    };
    expect(TrainSamInputSchema.safeParse(input).success).toBe(true);
    const misspelled = TrainSamInputSchema.safeParse({ ...input, batchsize: 4 });
    expect(misspelled.success).toBe(false);
    expect(misspelled.error?.message).toContain('batchsize');
  });
});

describe('gateDecision', () => {
  const figures = (miou: number, noc90: number): EvaluateSamResult => ({
    images: 10,
    masks: 20,
    miou_1click: miou,
    noc90,
  });
  const gate = { minGain: 0.02, maxNoc90Loss: 0.5 };

  it('promotes the first version when there is no champion', () => {
    expect(gateDecision(figures(0.1, 19), null, gate)).toEqual({
      promoted: true,
      reason: 'no champion yet: the first version becomes it',
    });
  });

  it('promotes only a rise of at least minGain that costs at most maxNoc90Loss clicks', () => {
    const champion = figures(0.5, 10);
    expect(gateDecision(figures(0.53, 10.4), champion, gate).promoted).toBe(true);
    expect(gateDecision(figures(0.52, 10), champion, gate).promoted).toBe(true); // exactly δ
    const small = gateDecision(figures(0.51, 9), champion, gate);
    expect(small).toEqual({
      promoted: false,
      reason:
        'refused: 1-click mIoU 0.500 → 0.510 (+0.010, needs ≥ +0.020), NoC@90 10.00 → 9.00 (-1.000, allowed ≤ +0.500)',
    });
    expect(gateDecision(figures(0.6, 10.6), champion, gate)).toMatchObject({ promoted: false });
  });

  it('refuses a candidate whose evaluation measured nothing', () => {
    expect(gateDecision({ images: 3, masks: 0 }, figures(0.5, 10), gate)).toEqual({
      promoted: false,
      reason: 'the evaluation set gave no figures (0 masks)',
    });
  });
});

describe('detectorGateDecision', () => {
  const figures = (AP: number, AR100 = 0.2, boxes = 50): EvaluateDetectorResult => ({
    images: 10,
    boxes,
    detections: 100,
    AP,
    AP50: AP,
    AP75: AP,
    AP_small: AP,
    AP_medium: AP,
    AP_large: AP,
    AR1: AR100,
    AR10: AR100,
    AR100,
    settings: { score_threshold: 0.1, nms_iou: 0.5, max_detections: 100 },
    protocol: 'pycocotools COCOeval, iouType bbox, useCats 0',
  });

  it('promotes the first version, and then only a rise of box AP of at least minGain', () => {
    expect(detectorGateDecision(figures(0.01), null, { minGain: 0.01 }).promoted).toBe(true);
    expect(detectorGateDecision(figures(0.05), figures(0.04), { minGain: 0.01 }).promoted).toBe(true);
    expect(detectorGateDecision(figures(0.045), figures(0.04), { minGain: 0.01 })).toEqual({
      promoted: false,
      reason: 'refused: box AP 0.040 → 0.045 (+0.005, needs ≥ +0.010), AR@100 0.200 → 0.200',
    });
  });

  it('refuses a candidate measured on no boxes', () => {
    expect(detectorGateDecision(figures(0, 0, 0), null, { minGain: 0 }).promoted).toBe(false);
  });
});
