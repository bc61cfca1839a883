// The limits on an input image: one pixel-limit default shared by image-io and the run config, a
// byte limit checked before decoding, and release copies decoded under the same kind of limits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeReleaseCopy } from '../../lib/dataset/release-copy.ts';
import type { DoneLine } from '../../lib/dataset/masks-file.ts';
import {
  DEFAULT_MAX_IMAGE_BYTES,
  DEFAULT_MAX_PIXELS,
  ImageFileTooLargeError,
  ImageTooLargeError,
  loadImage,
} from '../../lib/images/image-io.ts';
import type { ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { createRunConfigSchema } from '../../lib/run-config.ts';

function png(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#336699' } })
    .png()
    .toBuffer();
}

describe('one default for each limit', () => {
  it('the run config takes its pixel and byte limits from image-io', () => {
    const config = createRunConfigSchema().parse({
      run: 'limits',
      images: { prefix: 'file:///tmp/images' },
      output: 'file:///tmp/out',
      models: { sam: 'file:///tmp/model' },
    });
    expect(DEFAULT_MAX_PIXELS).toBe(120_000_000);
    expect(config.stage3.maxImagePixels).toBe(DEFAULT_MAX_PIXELS);
    expect(DEFAULT_MAX_IMAGE_BYTES).toBe(256 * 1024 * 1024);
    expect(config.stage3.maxImageBytes).toBe(DEFAULT_MAX_IMAGE_BYTES);
  });
});

describe('loadImage byte limit', () => {
  it('refuses a file over maxBytes before reading its header, naming the limit', async () => {
    const bytes = await png(64, 48);
    const error = await loadImage(bytes, { name: 'big.png', maxBytes: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ImageFileTooLargeError);
    expect(error).toMatchObject({ code: 'too-many-bytes', bytes: bytes.length, maxBytes: 100 });
    expect((error as Error).message).toMatch(
      /^big\.png: the file is 0\.\d MiB, over the 0\.0 MiB limit \(stage3\.maxImageBytes = 100\); refused before decoding$/,
    );
    await expect(loadImage(bytes, { maxBytes: bytes.length })).resolves.toMatchObject({ width: 64 });
  });
});

describe('writeReleaseCopy limits', () => {
  let dir: string;
  let stores: StoreCache;
  let images: ObjectStore;
  let out: ObjectStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sae-release-'));
    stores = new StoreCache();
    images = stores.open(pathToFileURL(join(dir, 'images')).href);
    out = stores.open(pathToFileURL(join(dir, 'out')).href);
  });

  afterEach(async () => {
    await stores.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const lineFor = (key: string, w: number, h: number): DoneLine => ({
    key: images.uri(key),
    id: 7,
    w,
    h,
    status: 'done',
    masks: 'masks/7.json',
    count: 0,
    model: 'm@1',
    ms: 1,
  });

  it('writes the copy of an image the size stage 3 saw', async () => {
    await images.put('a.png', await png(40, 30));
    const copy = await writeReleaseCopy(out, stores, 'r1', lineFor('a.png', 40, 30), 1500);
    expect(copy.scale).toBe(1);
    expect(await out.exists(copy.key)).toBe(true);
  });

  it('refuses, from the header, a file replaced since stage 3 by one with more pixels', async () => {
    await images.put('a.png', await png(400, 300));
    const error = await writeReleaseCopy(out, stores, 'r1', lineFor('a.png', 40, 30), 1500).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ImageTooLargeError);
    expect(error).toMatchObject({ width: 400, height: 300, maxPixels: 1200 });
  });

  it('honours a byte limit', async () => {
    await images.put('a.png', await png(40, 30));
    const error = await writeReleaseCopy(out, stores, 'r1', lineFor('a.png', 40, 30), 1500, {
      maxBytes: 10,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ImageFileTooLargeError);
  });
});
