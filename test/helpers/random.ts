import { Random } from '../../lib/synth/random.ts';

/** Uniform numbers in [0, 1) from a seed: the project's one seeded generator, so failures reproduce. */
export function prng(seed: number): () => number {
  const r = new Random(seed);
  return () => r.next();
}
