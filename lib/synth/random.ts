// Seeded pseudo-random numbers for the synthetic data generator.
//
// Everything random in a synthetic dataset comes from here, never from Math.random, so the
// same seed always gives the same bytes. Each image gets its own generator derived from
// (dataset seed, image index): images do not depend on each other and can be made in any order.

/** Mixes 32-bit words into a well-spread 32-bit hash (a murmur3-style finaliser per word). */
export function hash32(a: number, b = 0, c = 0): number {
  // Fixed arity on purpose: texture noise calls this per pixel, and rest arguments allocate.
  let h = mix(0x9e3779b9, a);
  h = mix(h, b);
  return mix(h, c) >>> 0;
}

function mix(h: number, word: number): number {
  h = Math.imul(h ^ (word >>> 0), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** A mulberry32 generator with helpers for the distributions the scene builder needs. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = hash32(seed) || 1;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** Integer uniform in [min, max], both ends included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** Log-uniform in [min, max): as many small values per octave as large ones. */
  logUniform(min: number, max: number): number {
    return min * Math.pow(max / min, this.next());
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  /** A 32-bit seed for a child generator or a hash-based texture. */
  seed(): number {
    return Math.floor(this.next() * 4294967296);
  }
}
