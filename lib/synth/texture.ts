// Colours and surface textures ("materials") for synthetic scenes.
//
// A material answers one question: what colour is the surface at pixel (x, y)? Textures make
// the task harder than flat colour blobs (edges inside an object, similar colours across an
// edge) without costing much: every texture is a few arithmetic operations per pixel, and the
// noise is hash-based, so it needs no stored tables and is the same for the same seed.
import { hash32, type Random } from './random.ts';

export type Rgb = [number, number, number];

export interface Material {
  /** Writes the colour (0–255 floats) at pixel (x, y) into out[i], out[i + 1], out[i + 2]. */
  shade(x: number, y: number, out: Float32Array, i: number): void;
}

// ---------------------------------------------------------------------------------------------
// Colours
// ---------------------------------------------------------------------------------------------

/** HSV (h in [0, 1), s and v in [0, 1]) to RGB in 0–255. */
export function hsvToRgb(h: number, s: number, v: number): Rgb {
  const k = (n: number) => (n + h * 6) % 6;
  const f = (n: number) => 255 * (v - v * s * Math.max(0, Math.min(k(n), 4 - k(n), 1)));
  return [f(5), f(3), f(1)];
}

/** A random colour up to `maxSaturation` (0 = grey, 1 = vivid), never pure black or white. */
export function randomColour(rand: Random, maxSaturation = 0.9): Rgb {
  return hsvToRgb(rand.next(), rand.uniform(0.05, maxSaturation), rand.uniform(0.15, 0.95));
}

function distance(a: Rgb, b: Rgb): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/** A random colour clearly different from `other`, so a part stands out from its whole. */
export function contrastingColour(rand: Random, other: Rgb, minDistance = 90): Rgb {
  let best = randomColour(rand);
  // A few tries keep it simple and deterministic; the farthest one wins if none is far enough.
  for (let attempt = 0; attempt < 8 && distance(best, other) < minDistance; attempt++) {
    const candidate = randomColour(rand);
    if (distance(candidate, other) > distance(best, other)) best = candidate;
  }
  return best;
}

/** A random colour close to `base`: a second tone of the same surface. */
export function nearbyColour(rand: Random, base: Rgb, spread = 60): Rgb {
  return base.map((c) => clamp255(c + rand.uniform(-spread, spread))) as Rgb;
}

const clamp255 = (v: number) => Math.min(255, Math.max(0, v));

// ---------------------------------------------------------------------------------------------
// Hash-based value noise
// ---------------------------------------------------------------------------------------------

/** Smooth noise in [0, 1]: random values on an integer lattice, blended with a smoothstep. */
export function valueNoise(seed: number, x: number, y: number): number {
  const ix = Math.floor(x);
  const iy = Math.floor(y);
  const fx = x - ix;
  const fy = y - iy;
  const sx = fx * fx * (3 - 2 * fx);
  const sy = fy * fy * (3 - 2 * fy);
  const v00 = lattice(seed, ix, iy);
  const v10 = lattice(seed, ix + 1, iy);
  const v01 = lattice(seed, ix, iy + 1);
  const v11 = lattice(seed, ix + 1, iy + 1);
  const top = v00 + (v10 - v00) * sx;
  const bottom = v01 + (v11 - v01) * sx;
  return top + (bottom - top) * sy;
}

function lattice(seed: number, ix: number, iy: number): number {
  return hash32(seed, ix, iy) / 4294967296;
}

/** Fractal noise: octaves of value noise, each twice as fine and half as strong. */
export function fbm(seed: number, x: number, y: number, octaves: number): number {
  let sum = 0;
  let weight = 0.5;
  let total = 0;
  for (let o = 0; o < octaves; o++) {
    sum += weight * valueNoise(seed + o * 7919, x, y);
    total += weight;
    x *= 2;
    y *= 2;
    weight *= 0.5;
  }
  return sum / total;
}

// ---------------------------------------------------------------------------------------------
// Materials
// ---------------------------------------------------------------------------------------------

function mixInto(a: Rgb, b: Rgb, t: number, out: Float32Array, i: number): void {
  out[i] = a[0] + (b[0] - a[0]) * t;
  out[i + 1] = a[1] + (b[1] - a[1]) * t;
  out[i + 2] = a[2] + (b[2] - a[2]) * t;
}

/** One colour with a faint grain, like paint or plastic. */
export function flatMaterial(colour: Rgb, seed: number, grain = 0.08): Material {
  const dark: Rgb = colour.map((c) => c * (1 - grain)) as Rgb;
  return { shade: (x, y, out, i) => mixInto(dark, colour, valueNoise(seed, x / 3, y / 3), out, i) };
}

/** Two colours blended by fractal noise: stone, foliage, fabric, clouds. */
export function noiseMaterial(a: Rgb, b: Rgb, seed: number, cellSize: number, octaves: number): Material {
  return { shade: (x, y, out, i) => mixInto(a, b, fbm(seed, x / cellSize, y / cellSize, octaves), out, i) };
}

/** Parallel bands of two colours, slightly wavy; `sharpness` 1 is a sine, higher is crisper. */
export function stripeMaterial(
  a: Rgb,
  b: Rgb,
  seed: number,
  period: number,
  angle: number,
  sharpness: number,
): Material {
  const dx = Math.cos(angle) / period;
  const dy = Math.sin(angle) / period;
  return {
    shade: (x, y, out, i) => {
      const phase = x * dx + y * dy + 0.3 * valueNoise(seed, x / 40, y / 40);
      const wave = Math.sin(2 * Math.PI * phase);
      const t = 0.5 + 0.5 * Math.max(-1, Math.min(1, wave * sharpness));
      mixInto(a, b, t, out, i);
    },
  };
}

/** A linear ramp from `a` to `b` along `angle`, `length` pixels long and centred on (cx, cy). */
export function gradientMaterial(
  a: Rgb,
  b: Rgb,
  cx: number,
  cy: number,
  angle: number,
  length: number,
): Material {
  const dx = Math.cos(angle) / length;
  const dy = Math.sin(angle) / length;
  return {
    shade: (x, y, out, i) => {
      const t = Math.max(0, Math.min(1, 0.5 + (x - cx) * dx + (y - cy) * dy));
      mixInto(a, b, t, out, i);
    },
  };
}

/**
 * Lights a material like a rounded 3-D surface: brighter on the side facing the light (unit
 * direction lx, ly), darker on the far side, over an object of `radius` around (cx, cy).
 */
export function shadedMaterial(
  material: Material,
  cx: number,
  cy: number,
  radius: number,
  lx: number,
  ly: number,
  strength: number,
): Material {
  const kx = (strength * lx) / radius;
  const ky = (strength * ly) / radius;
  return {
    shade: (x, y, out, i) => {
      material.shade(x, y, out, i);
      const gain = 1 + Math.max(-strength, Math.min(strength, (x - cx) * kx + (y - cy) * ky));
      out[i]! *= gain;
      out[i + 1]! *= gain;
      out[i + 2]! *= gain;
    },
  };
}

/** Two materials split by a wavy horizontal line at `horizon`: sky over ground, wall over floor. */
export function horizonMaterial(
  top: Material,
  bottom: Material,
  seed: number,
  horizon: number,
  wave: number,
): Material {
  return {
    shade: (x, y, out, i) => {
      const edge = horizon + wave * (fbm(seed, x / 120, 0.5, 2) - 0.5);
      (y < edge ? top : bottom).shade(x, y, out, i);
    },
  };
}

/**
 * A random material around `base` for a surface of about `size` pixels centred on (cx, cy);
 * texture features scale with the size so small objects are not pure noise.
 */
export function randomMaterial(rand: Random, base: Rgb, size: number, cx: number, cy: number): Material {
  const second = nearbyColour(rand, base, rand.uniform(25, 90));
  const seed = rand.seed();
  switch (rand.pick(['flat', 'flat', 'noise', 'stripes', 'gradient'] as const)) {
    case 'flat':
      return flatMaterial(base, seed, rand.uniform(0.03, 0.15));
    case 'noise':
      return noiseMaterial(base, second, seed, Math.max(3, size * rand.uniform(0.05, 0.4)), rand.int(1, 3));
    case 'stripes':
      return stripeMaterial(
        base,
        second,
        seed,
        Math.max(3, size * rand.uniform(0.05, 0.3)),
        rand.uniform(0, Math.PI),
        rand.uniform(1, 6),
      );
    case 'gradient':
      return gradientMaterial(base, second, cx, cy, rand.uniform(0, 2 * Math.PI), Math.max(8, size));
  }
}
