// The audit's gate: thresholds from the run config (`audit.gate`), each null = report only. The
// figures go into every failure message so the message alone says how far off the run is.
import type { AuditConfig } from '../run-config.ts';
import type { IouFigures } from './figures.ts';

export type GateThresholds = AuditConfig['gate'];

export interface GateResult {
  passed: boolean;
  failures: string[];
}

export function evaluateGate(figures: IouFigures, gate: GateThresholds): GateResult {
  const failures: string[] = [];
  const check = (what: string, value: number | null, min: number | null, show: Show) => {
    if (min === null) return;
    if (value === null)
      failures.push(`${what} has no value (no human masks were audited), the gate is ${show(min, 1)}`);
    else if (value < min) {
      // Show enough digits that the figure and the gate differ ("89.99%" rather than "90.0%").
      let digits = 1;
      while (show(value, digits) === show(min, digits) && digits < 6) digits++;
      failures.push(`${what} is ${show(value, digits)}, below the gate ${show(min, digits)}`);
    }
  };
  check('share of IoU > 0.90', figures.shareAbove090, gate.minShareAbove090, percent);
  check('share of IoU > 0.75', figures.shareAbove075, gate.minShareAbove075, percent);
  check('mean IoU', figures.meanIou, gate.minMeanIou, (v, digits) => v.toFixed(digits + 2));
  return { passed: failures.length === 0, failures };
}

type Show = (value: number, digits: number) => string;

/** 0.8123 → "81.2%" (one decimal unless asked for more). */
export function percent(value: number, digits = 1): string {
  return `${(value * 100).toFixed(digits)}%`;
}
