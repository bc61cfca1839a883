import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerSynthCommands } from '../../cli/commands/synth.ts';
import { decompressRle, rleArea, rleIouMatrix, rleMerge, rleToBbox } from '../../lib/rle.ts';
import type { CocoAnnotation, CocoDataset } from '../../lib/synth/coco.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { hash32, Random } from '../../lib/synth/random.ts';
import { renderScene } from '../../lib/synth/render.ts';
import { buildScene } from '../../lib/synth/scene.ts';
import { fillPaths, type Path } from '../../lib/synth/shapes.ts';

/** Generates a dataset into memory: key → bytes. */
async function generate(images: number, seed: number): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  await generateSynthDataset({
    images,
    seed,
    write: async (key, bytes) => {
      files.set(key, bytes);
    },
  });
  return files;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const hashes = (files: Map<string, Uint8Array>) => new Map([...files].map(([k, v]) => [k, sha256(v)]));
const readDataset = (files: Map<string, Uint8Array>) =>
  JSON.parse(new TextDecoder().decode(files.get(ANNOTATIONS_KEY))) as CocoDataset;

function pixelCount(paths: Path[], width: number, height: number): number {
  let count = 0;
  fillPaths(paths, width, height, (_y, x0, x1) => (count += x1 - x0));
  return count;
}

describe('fillPaths (the shape rasteriser)', () => {
  it('fills pixels whose centres are inside, clipped to the image', () => {
    const square: Path = [2, 2, 12, 2, 12, 12, 2, 12];
    expect(pixelCount([square], 20, 20)).toBe(100);
    expect(pixelCount([square], 7, 20)).toBe(50); // columns 2..6 only
  });

  it('leaves the hole of a ring empty (even-odd rule)', () => {
    const outer: Path = [0, 0, 10, 0, 10, 10, 0, 10];
    const inner: Path = [3, 3, 7, 3, 7, 7, 3, 7];
    const rows: Array<[number, number, number]> = [];
    fillPaths([outer, inner], 10, 10, (y, x0, x1) => rows.push([y, x0, x1]));
    expect(pixelCount([outer, inner], 10, 10)).toBe(100 - 16);
    expect(rows.filter(([y]) => y === 5)).toEqual([
      [5, 0, 3],
      [5, 7, 10],
    ]);
  });
});

describe('synthetic dataset', () => {
  let files: Map<string, Uint8Array>;
  let dataset: CocoDataset;

  beforeAll(async () => {
    files = await generate(12, 7);
    dataset = readDataset(files);
  });

  it('writes every image named in annotations.json, and nothing else', () => {
    const keys = [...files.keys()].sort();
    expect(keys).toEqual([ANNOTATIONS_KEY, ...dataset.images.map((i) => i.file_name)].sort());
    expect(dataset.images.map((i) => i.id)).toEqual(Array.from({ length: 12 }, (_, k) => k + 1));
    expect(dataset.categories).toEqual([{ id: 1, name: 'object' }]);
  });

  it('encodes images as JPEG and PNG at the declared size, within the size and aspect ranges', async () => {
    const formats = new Set<string>();
    for (const image of dataset.images) {
      const meta = await sharp(files.get(image.file_name)!).metadata();
      expect(meta.format).toBe(image.file_name.endsWith('.jpg') ? 'jpeg' : 'png');
      expect([meta.width, meta.height]).toEqual([image.width, image.height]);
      expect(Math.min(image.width, image.height)).toBeGreaterThanOrEqual(240);
      expect(Math.min(image.width, image.height)).toBeLessThanOrEqual(720);
      expect(image.width / image.height).toBeGreaterThanOrEqual(0.49);
      expect(image.width / image.height).toBeLessThanOrEqual(2.01);
      formats.add(meta.format!);
    }
    expect([...formats].sort()).toEqual(['jpeg', 'png']);
  });

  it('gives every annotation a non-empty mask inside its image, with matching area and bbox', () => {
    const images = new Map(dataset.images.map((i) => [i.id, i]));
    expect(new Set(dataset.annotations.map((a) => a.id)).size).toBe(dataset.annotations.length);
    for (const a of dataset.annotations) {
      const image = images.get(a.image_id)!;
      const rle = decompressRle(a.segmentation);
      expect(a.segmentation.size).toEqual([image.height, image.width]);
      expect(a.area).toBe(rleArea(rle));
      expect(a.area).toBeGreaterThan(0);
      expect(a.bbox).toEqual(rleToBbox(rle));
      const [x, y, w, h] = a.bbox;
      expect(x + w).toBeLessThanOrEqual(image.width);
      expect(y + h).toBeLessThanOrEqual(image.height);
      expect(a).toMatchObject({ category_id: 1, iscrowd: 0 });
    }
  });

  it('keeps parts inside their whole and subparts inside their part', () => {
    const byId = new Map(dataset.annotations.map((a) => [a.id, a]));
    const expectedParent = { whole: undefined, part: 'whole', subpart: 'part' } as const;
    for (const a of dataset.annotations) {
      const parentLevel = expectedParent[a.level];
      if (parentLevel === undefined) {
        expect(a.parent_id).toBeUndefined();
        continue;
      }
      const parent = byId.get(a.parent_id!)!;
      expect(parent).toMatchObject({ level: parentLevel, image_id: a.image_id });
      const child = decompressRle(a.segmentation);
      // child ⊆ parent exactly when child ∩ parent = child.
      expect(rleMerge([child, decompressRle(parent.segmentation)], true)).toEqual(child);
      expect(a.area).toBeLessThanOrEqual(parent.area);
    }
  });

  it('never lets two wholes share a pixel (masks are what is visible)', () => {
    for (const image of dataset.images) {
      const wholes = dataset.annotations
        .filter((a) => a.image_id === image.id && a.level === 'whole')
        .map((a) => decompressRle(a.segmentation));
      const iou = rleIouMatrix(wholes, wholes);
      iou.forEach((row, i) => row.forEach((v, j) => expect(v).toBe(i === j ? 1 : 0)));
    }
  });

  it('covers every level, small objects and large ones', () => {
    const levels = (level: CocoAnnotation['level']) => dataset.annotations.filter((a) => a.level === level);
    expect(levels('whole').length).toBeGreaterThan(30);
    expect(levels('part').length).toBeGreaterThan(10);
    expect(levels('subpart').length).toBeGreaterThan(5);
    const sides = levels('whole').map((a) => Math.max(a.bbox[2], a.bbox[3]));
    expect(Math.min(...sides)).toBeLessThanOrEqual(24);
    expect(Math.max(...sides)).toBeGreaterThanOrEqual(200);
  });
});

describe('scenes', () => {
  it('have objects hidden in part by the ones in front', () => {
    let occluded = 0;
    for (let index = 0; index < 4; index++) {
      const scene = buildScene(new Random(hash32(1, index)));
      const { masks } = renderScene(scene);
      for (const object of scene.objects) {
        // Everything the object painted, before anything in front covered it.
        const painted = new Uint8Array(scene.width * scene.height);
        for (const layer of object.layers) {
          fillPaths(layer.paths, scene.width, scene.height, (y, x0, x1) =>
            painted.fill(1, y * scene.width + x0, y * scene.width + x1),
          );
        }
        const whole = object.layers[0]!.node;
        if (rleArea(masks[whole]!) < painted.reduce((s, v) => s + v, 0)) occluded++;
      }
    }
    expect(occluded).toBeGreaterThan(3);
  });
});

describe('determinism', () => {
  it('gives the same bytes for the same seed, and different images for another seed', async () => {
    const [a, b, c] = await Promise.all([generate(3, 42), generate(3, 42), generate(3, 43)]);
    expect(hashes(a)).toEqual(hashes(b));
    // Formats may differ between seeds, so compare image files by position.
    const images = (files: Map<string, Uint8Array>) =>
      [...files].filter(([k]) => k !== ANNOTATIONS_KEY).map(([, v]) => sha256(v));
    const [imagesA, imagesC] = [images(a), images(c)];
    imagesA.forEach((h, i) => expect(h).not.toBe(imagesC[i]));
    expect(sha256(a.get(ANNOTATIONS_KEY)!)).not.toBe(sha256(c.get(ANNOTATIONS_KEY)!));
  });

  it('rejects a bad image count or seed', async () => {
    const write = async () => {};
    await expect(generateSynthDataset({ images: -1, seed: 1, write })).rejects.toThrow(/images must be/);
    await expect(generateSynthDataset({ images: 1, seed: 1.5, write })).rejects.toThrow(/seed must be/);
  });
});

describe('sa-engine synth', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  function program(): Command {
    const p = new Command().exitOverride();
    p.configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerSynthCommands(p);
    return p;
  }

  it('writes images and annotations.json to a file:// URI', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sae-synth-'));
    dirs.push(dir);
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const uri = new URL(`file://${dir}/out`).href;
    await program().parseAsync(['synth', '--out', uri, '--images', '2', '--seed', '5'], { from: 'user' });
    expect((await readdir(path.join(dir, 'out'))).sort()).toEqual(['annotations.json', 'images']);
    expect(await readdir(path.join(dir, 'out/images'))).toHaveLength(2);
    const dataset = JSON.parse(await readFile(path.join(dir, 'out/annotations.json'), 'utf8')) as CocoDataset;
    expect(dataset.images).toHaveLength(2);
    expect(stdout.mock.calls.join('')).toMatch(/wrote 2 images .* annotations/);
  });

  it('refuses bad options with a clear message', async () => {
    const bad = [
      [['synth', '--out', 'ftp://host/x', '--images', '1'], /unknown scheme "ftp:"/],
      [['synth', '--out', '/tmp/x', '--images', 'many'], /whole number/],
      [['synth', '--out', '/tmp/x', '--seed', '-3'], /expected an integer/],
    ] as const;
    for (const [args, message] of bad) {
      await expect(program().parseAsync([...args], { from: 'user' })).rejects.toThrow(message);
    }
  });
});
