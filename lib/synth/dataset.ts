// Generates a whole synthetic dataset: images plus COCO annotations, written through a callback
// so the caller decides where bytes go (a folder, an object store, memory in tests).
//
// Layout under the output root:
//   images/synth-000001.jpg | .png    the pictures (a mix of JPEG and PNG)
//   annotations.json                   COCO instances; see coco.ts
// Image i depends only on (seed, i), so the same seed gives the same bytes.
import sharp from 'sharp';
import {
  imageAnnotations,
  OBJECT_CATEGORY,
  type CocoAnnotation,
  type CocoDataset,
  type CocoImage,
} from './coco.ts';
import { hash32, Random } from './random.ts';
import { renderScene } from './render.ts';
import { buildScene, DEFAULT_SCENE_OPTIONS, type Level, type SceneOptions } from './scene.ts';

/** Stores `bytes` under `key` (a relative path such as "images/synth-000001.jpg"). */
export type WriteOutput = (key: string, bytes: Uint8Array) => Promise<void>;

export interface SynthOptions {
  images: number;
  seed: number;
  write: WriteOutput;
  scene?: SceneOptions;
  /** Annotations smaller than this many visible pixels are dropped (with their children). */
  minArea?: number;
  /** Called after each image is written, for progress output. */
  onImage?: (done: number, total: number) => void;
}

export interface SynthSummary {
  images: number;
  annotations: number;
  byLevel: Record<Level, number>;
  jpeg: number;
  png: number;
}

export const ANNOTATIONS_KEY = 'annotations.json';

/** Seeds are 32-bit: they are hashed together with the image index into 32-bit generator states. */
export const MAX_SEED = 0xffffffff;

export async function generateSynthDataset(options: SynthOptions): Promise<SynthSummary> {
  const { images: count, seed, write } = options;
  if (!Number.isInteger(count) || count < 0)
    throw new Error(`images must be a whole number ≥ 0, got ${count}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new Error(`seed must be an integer from 0 to ${MAX_SEED}, got ${seed}`);
  }
  const dataset: CocoDataset = {
    info: { description: 'sa-engine synthetic ground truth', seed },
    images: [],
    annotations: [],
    categories: [OBJECT_CATEGORY],
  };
  // Encoding runs on sharp's worker threads: let it overlap with drawing the next image.
  let pending: Promise<void> = Promise.resolve();
  for (let index = 0; index < count; index++) {
    const made = makeImage(seed, index, dataset.annotations.length + 1, options);
    dataset.images.push(made.image);
    dataset.annotations.push(...made.annotations);
    await pending; // the previous image is written
    if (index > 0) options.onImage?.(index, count);
    pending = made.bytes.then((bytes) => write(made.image.file_name, bytes));
  }
  await pending;
  if (count > 0) options.onImage?.(count, count);
  await write(ANNOTATIONS_KEY, new TextEncoder().encode(JSON.stringify(dataset)));
  return summarise(dataset);
}

interface MadeImage {
  image: CocoImage;
  annotations: CocoAnnotation[];
  bytes: Promise<Uint8Array>;
}

/** Draws image `index` (ids start at 1) and starts encoding it. */
function makeImage(seed: number, index: number, firstAnnotationId: number, options: SynthOptions): MadeImage {
  const rand = new Random(hash32(seed, index));
  const scene = buildScene(rand, options.scene ?? DEFAULT_SCENE_OPTIONS);
  const rendered = renderScene(scene);
  const jpeg = rand.chance(0.6);
  const name = `synth-${String(index + 1).padStart(6, '0')}.${jpeg ? 'jpg' : 'png'}`;
  const image: CocoImage = {
    id: index + 1,
    file_name: `images/${name}`,
    width: scene.width,
    height: scene.height,
  };
  const raw = sharp(rendered.rgb, { raw: { width: scene.width, height: scene.height, channels: 3 } });
  const encoded = jpeg ? raw.jpeg({ quality: rand.int(85, 95) }) : raw.png();
  return {
    image,
    annotations: imageAnnotations(
      image.id,
      scene.nodes,
      rendered.masks,
      firstAnnotationId,
      options.minArea ?? 16,
    ),
    bytes: encoded.toBuffer().then((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength)),
  };
}

function summarise(dataset: CocoDataset): SynthSummary {
  const byLevel: Record<Level, number> = { whole: 0, part: 0, subpart: 0 };
  for (const a of dataset.annotations) byLevel[a.level]++;
  const jpeg = dataset.images.filter((i) => i.file_name.endsWith('.jpg')).length;
  return {
    images: dataset.images.length,
    annotations: dataset.annotations.length,
    byLevel,
    jpeg,
    png: dataset.images.length - jpeg,
  };
}
