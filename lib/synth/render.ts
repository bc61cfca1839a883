// Turns a scene into pixels and into the exact visible mask of every node.
//
// Painting fills an "owner" map: for every pixel, the index of the last layer painted over it.
// Masks come from that map, so they are exactly what the picture shows after occlusion, and a
// node's mask is the pixels owned by any layer of its subtree (a part is always inside its
// whole). Colours come afterwards: each pixel asks its owner's material, then the whole picture
// gets lighting, a slight blur and sensor noise, like a photo.
import { RleBuilder, type Rle } from '../rle.ts';
import { hash32, Random } from './random.ts';
import { fillPaths, type Path } from './shapes.ts';
import type { Scene, SceneLayer } from './scene.ts';

export interface RenderedScene {
  width: number;
  height: number;
  /** Row-major RGB bytes, width × height × 3. */
  rgb: Uint8Array;
  /** The visible mask of every scene node, in Scene.nodes order (possibly empty). */
  masks: Rle[];
}

export function renderScene(scene: Scene): RenderedScene {
  const layers = scene.objects.flatMap((o) => o.layers);
  const { owner, shadow } = paint(scene);
  const colour = shade(scene, layers, owner, shadow);
  blur(colour, scene.width, scene.height, scene.look.blur);
  const rgb = addSensorNoise(colour, scene.look.noise, scene.noiseSeed);
  const masks = visibleMasks(scene, layers, owner);
  return { width: scene.width, height: scene.height, rgb, masks };
}

/** Paints objects back to front: who owns each pixel, and how much light its shadows leave. */
function paint(scene: Scene): { owner: Int32Array; shadow: Float32Array } {
  const { width, height } = scene;
  const owner = new Int32Array(width * height).fill(-1); // -1 = background
  const shadow = new Float32Array(width * height).fill(1);
  let layerIndex = 0;
  for (const object of scene.objects) {
    // The shadow lands on whatever is already painted; the object then covers part of it.
    const cast = object.shadow;
    if (cast) {
      for (const layer of object.layers) {
        const shifted = layer.paths.map((p) => shiftPath(p, cast.dx, cast.dy));
        fillPaths(shifted, width, height, (y, x0, x1) => {
          for (let i = y * width + x0; i < y * width + x1; i++) shadow[i] = Math.min(shadow[i]!, cast.light);
        });
      }
    }
    for (const layer of object.layers) {
      const index = layerIndex++;
      fillPaths(layer.paths, width, height, (y, x0, x1) => {
        owner.fill(index, y * width + x0, y * width + x1);
        shadow.fill(1, y * width + x0, y * width + x1);
      });
    }
  }
  return { owner, shadow };
}

function shiftPath(path: Path, dx: number, dy: number): Path {
  return path.map((v, i) => v + (i % 2 === 0 ? dx : dy));
}

/** Colour of every pixel from its owner's material, times lighting and shadow (float RGB). */
function shade(scene: Scene, layers: SceneLayer[], owner: Int32Array, shadow: Float32Array): Float32Array {
  const { width, height, look } = scene;
  const colour = new Float32Array(width * height * 3);
  const diagonal = Math.hypot(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = y * width + x;
      const o = owner[p]!;
      const material = o < 0 ? scene.background : layers[o]!.material;
      material.shade(x, y, colour, 3 * p);
      // Brighter towards the light, darker in the corners.
      const u = (x - width / 2) / diagonal;
      const v = (y - height / 2) / diagonal;
      const ramp = 1 + look.ramp * 2 * (u * look.lightX + v * look.lightY);
      const vignette = 1 - look.vignette * 4 * (u * u + v * v);
      const gain = ramp * vignette * shadow[p]!;
      colour[3 * p]! *= gain;
      colour[3 * p + 1]! *= gain;
      colour[3 * p + 2]! *= gain;
    }
  }
  return colour;
}

/** A separable 3-tap blur [a, 1 − 2a, a] along rows then columns, edges clamped; in place. */
function blur(colour: Float32Array, width: number, height: number, a: number): void {
  // Rows: pixel neighbours are 3 floats apart; columns: a whole row (3 · width floats) apart.
  blurLines(colour, a, height, 3 * width, width, 3);
  blurLines(colour, a, width, 3, height, 3 * width);
}

/**
 * Blurs `count` lines of `length` RGB pixels: line l starts at l · lineStep, and neighbouring
 * pixels on it are `step` floats apart. Keeps the unblurred previous pixel in three locals so
 * the line can be overwritten as it goes.
 */
function blurLines(
  c: Float32Array,
  a: number,
  count: number,
  lineStep: number,
  length: number,
  step: number,
): void {
  const centre = 1 - 2 * a;
  for (let l = 0; l < count; l++) {
    const start = l * lineStep;
    const last = start + (length - 1) * step;
    let prevR = c[start]!;
    let prevG = c[start + 1]!;
    let prevB = c[start + 2]!;
    for (let i = start; i <= last; i += step) {
      const next = i < last ? i + step : i;
      const r = c[i]!;
      const g = c[i + 1]!;
      const b = c[i + 2]!;
      c[i] = a * (prevR + c[next]!) + centre * r;
      c[i + 1] = a * (prevG + c[next + 1]!) + centre * g;
      c[i + 2] = a * (prevB + c[next + 2]!) + centre * b;
      prevR = r;
      prevG = g;
      prevB = b;
    }
  }
}

/** Adds Gaussian noise of standard deviation `sigma` and rounds to bytes. */
function addSensorNoise(colour: Float32Array, sigma: number, seed: number): Uint8Array {
  const table = gaussianTable();
  const out = new Uint8ClampedArray(colour.length); // stores clamp to 0–255 and round
  // xorshift32 inline (a method call per value was the slowest part of rendering); each 32-bit
  // draw picks two precomputed Gaussian samples, 16 bits of index each.
  let state = hash32(seed) || 1;
  for (let i = 0; i < colour.length; i += 2) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = colour[i]! + sigma * table[state & 0xffff]!;
    if (i + 1 < colour.length) out[i + 1] = colour[i + 1]! + sigma * table[state >>> 16]!;
  }
  return new Uint8Array(out.buffer);
}

let gaussianSamples: Float32Array | undefined;

/** 65536 standard normal samples (Box–Muller, fixed seed), made once. */
function gaussianTable(): Float32Array {
  if (!gaussianSamples) {
    const rand = new Random(0x5eed);
    gaussianSamples = new Float32Array(65536);
    for (let i = 0; i < gaussianSamples.length; i++) {
      const u = 1 - rand.next(); // (0, 1], keeps log finite
      gaussianSamples[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand.next());
    }
  }
  return gaussianSamples;
}

/**
 * The visible mask of every node, built in one column-major walk over the owner map: each
 * pixel is added to its owner's node and all of that node's ancestors.
 */
function visibleMasks(scene: Scene, layers: SceneLayer[], owner: Int32Array): Rle[] {
  const { width, height, nodes } = scene;
  const builders = nodes.map(() => new RleBuilder(height, width));
  const layerNode = layers.map((l) => l.node);
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const o = owner[y * width + x]!;
      if (o < 0) continue;
      const position = x * height + y;
      for (let node: number | undefined = layerNode[o]; node !== undefined; node = nodes[node]!.parent) {
        builders[node]!.add(position);
      }
    }
  }
  return builders.map((b) => b.finish());
}
