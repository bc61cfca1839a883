// What a stored output was made from. Plans, shard results and run records carry the digest of
// their inputs, so that a run reusing an id or an output folder (after Temporal's retention forgot
// the old run, or a resume with a changed config) never silently builds on outputs made from other
// inputs: it compares, and a mismatch fails with the differences spelled out.
import { createHash } from 'node:crypto';

/** The inputs of a stored output and their digest, as it is written next to the output. */
export interface Fingerprint<T extends Record<string, unknown> = Record<string, unknown>> {
  fingerprint: string;
  inputs: T;
}

export function fingerprintOf<T extends Record<string, unknown>>(inputs: T): Fingerprint<T> {
  const digest = createHash('sha256').update(canonicalJson(inputs)).digest('hex');
  return { fingerprint: digest.slice(0, 16), inputs };
}

/** `shardSize: 4, now 2` for every top-level input that differs; empty when they match. */
export function inputDifferences(
  stored: Record<string, unknown>,
  current: Record<string, unknown>,
): string[] {
  const keys = [...new Set([...Object.keys(stored), ...Object.keys(current)])].sort();
  return keys
    .filter((key) => canonicalJson(stored[key]) !== canonicalJson(current[key]))
    .map(
      (key) =>
        `${key}: ${canonicalJson(stored[key]) ?? 'absent'}, now ${canonicalJson(current[key]) ?? 'absent'}`,
    );
}

/** JSON with object keys sorted at every level, so equal inputs give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
