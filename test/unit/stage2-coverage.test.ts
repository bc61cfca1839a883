import { describe, expect, it } from 'vitest';
import { notYetCovered, reviewPrefilled } from '../../lib/stage2/coverage.ts';

/** A 1×10 mask set over [from, to). */
function span(from: number, to: number): Uint8Array {
  return Uint8Array.from({ length: 10 }, (_, i) => (i >= from && i < to ? 1 : 0));
}

describe('notYetCovered', () => {
  it('leaves out the intended masks a pre-filled mask covers at IoU ≥ 0.5, keeps the rest in order', () => {
    const a = span(0, 4);
    const b = span(4, 6);
    const c = span(6, 10);
    // The first covers a exactly; the second overlaps c with IoU 3/5 and b with IoU 1/5.
    const prefilled = [span(0, 4), span(5, 9)];
    expect(notYetCovered([a, b, c], prefilled)).toEqual([b]);
  });

  it('keeps everything when nothing is pre-filled, and honours another bound', () => {
    const a = span(0, 4);
    expect(notYetCovered([a], [])).toEqual([a]);
    expect(notYetCovered([a], [span(0, 3)], 0.8)).toEqual([a]); // IoU 0.75
    expect(notYetCovered([a], [span(0, 3)], 0.7)).toEqual([]);
  });
});

describe('reviewPrefilled', () => {
  it('keeps the pre-filled masks that match an object, deletes the rest, and leaves what none covers', () => {
    const a = span(0, 4);
    const b = span(4, 6);
    const c = span(6, 10);
    // 0 matches a; 1 lies across b and c (IoU 1/5 and 2/5 at most): wrong; 2 matches c (IoU 3/4).
    const prefilled = [span(0, 4), span(5, 8), span(7, 10)];
    expect(reviewPrefilled([a, b, c], prefilled)).toEqual({ keep: [0, 2], reject: [1], left: [b] });
    expect(reviewPrefilled([a], [])).toEqual({ keep: [], reject: [], left: [a] });
  });
});
