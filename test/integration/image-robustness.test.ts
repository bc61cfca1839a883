// Bad and unusual inputs through the whole image path (loadImage → preprocess): every case ends
// in a typed ImageDecodeError that names the file, or in a correct result of the right size;
// never a crash, a hang or a silently wrong size.
//
// Synthetic files are made here (crafted headers, CMYK, 16-bit, alpha); real ones come from
// $SAE_REAL_DATA/robustness (EXIF orientations 0-8, PNGs named .jpg, a 24 MP PNG, grey JPEG, BMP),
// whose manifest.json gives each file's container, mode and stored size.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import {
  CorruptImageError,
  EmptyImageError,
  ImageDecodeError,
  ImageTooLargeError,
  loadImage,
  readImageHeader,
  UnsupportedImageError,
  type DecodedImage,
} from '../../lib/images/image-io.ts';
import { preprocess } from '../../lib/sam/preprocess.ts';
import { pngBomb } from '../helpers/hand-made-images.ts';

const realData = process.env.SAE_REAL_DATA;
const robustness = realData ? path.join(realData, 'robustness') : '';

interface ManifestEntry {
  file: string;
  bytes: number;
  container: 'JPEG' | 'PNG' | 'BMP';
  mode: 'RGB' | 'RGBA' | 'L';
  /** [width, height] as stored, before EXIF orientation. */
  stored_size: [number, number];
  exif_orientation: number | null;
}

async function rejection(promise: Promise<unknown>): Promise<ImageDecodeError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ImageDecodeError);
  return error as ImageDecodeError;
}

/** A small but real photo-like image, so the synthetic cases are not all flat colours. */
async function samplePhoto(): Promise<Buffer> {
  const width = 96;
  const height = 64;
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      data.set([(x * 255) / width, (y * 255) / height, ((x + y) * 7) % 256], (y * width + x) * 3);
    }
  }
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** A real JPEG with the size in its SOF0 segment rewritten. */
async function jpegDeclaring(width: number, height: number): Promise<Buffer> {
  const jpeg = Buffer.from(
    await sharp(await samplePhoto())
      .jpeg()
      .toBuffer(),
  );
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  jpeg.writeUInt16BE(height, sof + 5);
  jpeg.writeUInt16BE(width, sof + 7);
  return jpeg;
}

function meanAbsoluteDifference(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

/** The image flipped left-right: what a wrongly applied orientation would look like. */
function mirrored(image: DecodedImage): Uint8Array {
  const { width, height, data } = image;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (y * width + (width - 1 - x)) * 3;
      out.set(data.subarray(from, from + 3), (y * width + x) * 3);
    }
  }
  return out;
}

/** The size loadImage must return: the stored one, turned for orientations 5-8. */
function uprightSize(entry: ManifestEntry): [number, number] {
  const [w, h] = entry.stored_size;
  return (entry.exif_orientation ?? 1) >= 5 ? [h, w] : [w, h];
}

function expectRgb(image: DecodedImage, width: number, height: number): void {
  expect([image.width, image.height, image.channels]).toEqual([width, height, 3]);
  expect(image.data.length).toBe(width * height * 3);
}

// ---------------------------------------------------------------------------------------------

describe('image robustness: synthetic files', () => {
  it('0-byte file', async () => {
    const error = await rejection(loadImage(Buffer.alloc(0), { name: 'empty.jpg' }));
    expect(error).toBeInstanceOf(EmptyImageError);
    expect(error.message).toBe('empty.jpg: the file is empty (0 bytes)');
  });

  it('truncated JPEG', async () => {
    const jpeg = await sharp(await samplePhoto())
      .jpeg()
      .toBuffer();
    for (const fraction of [0.1, 0.5, 0.9]) {
      const cut = jpeg.subarray(0, Math.floor(jpeg.length * fraction));
      const error = await rejection(loadImage(cut, { name: 'cut.jpg' }));
      expect(error).toBeInstanceOf(CorruptImageError);
      expect(error.message).toMatch(/^cut\.jpg: corrupt or truncated image: /);
    }
  });

  it('a text file named .jpg', async () => {
    const error = await rejection(loadImage(Buffer.from('name,score\ncat,0.9\n'), { name: 'scores.jpg' }));
    expect(error).toBeInstanceOf(UnsupportedImageError);
    expect(error.message).toMatch(/^scores\.jpg: unsupported image: not a recognised image format/);
  });

  it('1×1 image decodes and preprocesses to a full 1024×1024 input', async () => {
    const png = await sharp(Buffer.from([10, 20, 30]), { raw: { width: 1, height: 1, channels: 3 } })
      .png()
      .toBuffer();
    const image = await loadImage(png, { name: 'dot.png' });
    expectRgb(image, 1, 1);
    const input = preprocess(image);
    expect(input.inputSize).toEqual([1024, 1024]);
    expect(input.originalSize).toEqual([1, 1]);
  });

  it.each([
    ['PNG', () => Promise.resolve(pngBomb(30000, 30000))],
    ['JPEG', () => jpegDeclaring(30000, 30000)],
  ])('a %s header declaring 30000×30000 is refused from the header, before decoding', async (_, make) => {
    const bomb = await make();
    expect(bomb.length).toBeLessThan(100_000);
    expect(await readImageHeader(bomb)).toMatchObject({ width: 30000, height: 30000 });
    const error = await rejection(loadImage(bomb, { name: 'bomb', maxPixels: 100_000_000 }));
    expect(error).toBeInstanceOf(ImageTooLargeError);
    expect(error.message).toMatch(
      /^bomb: the header declares 30000×30000 = 900\.0 MP, over the limit of 100\.0 MP/,
    );
    // From the header: the few KB behind it could not have been decoded to 900 MP.
    expect(error).toMatchObject({ width: 30000, height: 30000, maxPixels: 100_000_000 });
  });

  it('CMYK JPEG comes out as RGB close to the original', async () => {
    const photo = await samplePhoto();
    const original = await loadImage(photo);
    const cmyk = await sharp(photo).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    expect(await readImageHeader(cmyk)).toMatchObject({ colourSpace: 'cmyk', channels: 4 });
    const image = await loadImage(cmyk, { name: 'cmyk.jpg' });
    expectRgb(image, original.width, original.height);
    expect(meanAbsoluteDifference(image.data, original.data)).toBeLessThan(20);
  });

  it('16-bit PNG comes out as the same 8-bit image', async () => {
    const photo = await samplePhoto();
    const png16 = await sharp(photo).toColourspace('rgb16').png().toBuffer();
    expect(await readImageHeader(png16)).toMatchObject({ bitDepth: 16 });
    const image = await loadImage(png16, { name: 'deep.png' });
    expect(Buffer.from(image.data).equals(Buffer.from((await loadImage(photo)).data))).toBe(true);
  });

  it('PNG with alpha: alpha dropped, the RGB under it kept', async () => {
    const photo = await samplePhoto();
    const rgba = await sharp(photo)
      .ensureAlpha(0) // fully transparent everywhere: compositing would turn it all white
      .png()
      .toBuffer();
    expect(await readImageHeader(rgba)).toMatchObject({ hasAlpha: true, channels: 4 });
    const image = await loadImage(rgba, { name: 'cutout.png' });
    expect(Buffer.from(image.data).equals(Buffer.from((await loadImage(photo)).data))).toBe(true);
  });
});

describe.skipIf(!realData)('image robustness: $SAE_REAL_DATA/robustness (set SAE_REAL_DATA to run)', () => {
  const manifest = (): ManifestEntry[] =>
    JSON.parse(readFileSync(path.join(robustness, 'manifest.json'), 'utf8')) as ManifestEntry[];
  const bytesOf = (entry: ManifestEntry) => readFileSync(path.join(robustness, entry.file));

  it('every file in the manifest decodes to its upright size, with the right header', async () => {
    const entries = manifest();
    expect(entries.length).toBeGreaterThanOrEqual(37);
    for (const entry of entries) {
      expect(existsSync(path.join(robustness, entry.file)), entry.file).toBe(true);
      const header = await readImageHeader(bytesOf(entry), { name: entry.file });
      const image = await loadImage(bytesOf(entry), { name: entry.file });
      const [width, height] = uprightSize(entry);
      expect(header.format, entry.file).toBe(entry.container.toLowerCase());
      expect([header.storedWidth, header.storedHeight], entry.file).toEqual(entry.stored_size);
      expect([header.width, header.height], entry.file).toEqual([width, height]);
      expect(header.hasAlpha, entry.file).toBe(entry.mode === 'RGBA');
      expectRgb(image, width, height);
    }
  });

  it('EXIF orientations 0-8 all show the same upright picture', async () => {
    for (const kind of ['Landscape', 'Portrait']) {
      const upright = await loadImage(readFileSync(path.join(robustness, `exif_orientation/${kind}_1.jpg`)));
      for (let orientation = 0; orientation <= 8; orientation++) {
        const name = `exif_orientation/${kind}_${orientation}.jpg`;
        const image = await loadImage(readFileSync(path.join(robustness, name)), { name });
        expect([image.width, image.height], name).toEqual([upright.width, upright.height]);
        // Each file is the same photo stored turned/flipped; once upright only JPEG re-encoding
        // noise remains (measured: at most 3.7 levels), while a mirrored picture differs by 40+.
        expect(meanAbsoluteDifference(image.data, upright.data), name).toBeLessThan(8);
      }
      expect(meanAbsoluteDifference(mirrored(upright), upright.data)).toBeGreaterThan(20);
    }
  });

  it('PNGs named .jpg are recognised by their content', async () => {
    for (const entry of manifest().filter((e) => e.file.startsWith('wrong_extension/'))) {
      expect((await readImageHeader(bytesOf(entry), { name: entry.file })).format).toBe('png');
    }
  });

  it('the 24 MP PNG decodes under the default limit and is refused under a lower one', async () => {
    const file = 'wrong_extension/food-1.out.alpha.jpg';
    const bytes = readFileSync(path.join(robustness, file));
    expectRgb(await loadImage(bytes, { name: file }), 6000, 4000);
    const error = await rejection(loadImage(bytes, { name: file, maxPixels: 20_000_000 }));
    expect(error).toBeInstanceOf(ImageTooLargeError);
    expect(error.message).toContain(file);
  });

  it('grey JPEG becomes three equal channels', async () => {
    const file = 'grayscale/coco_431848_gray.jpg';
    const image = await loadImage(readFileSync(path.join(robustness, file)), { name: file });
    expect(image.header.channels).toBe(1);
    let unequal = 0;
    for (let p = 0; p < image.width * image.height; p++) {
      const [r, g, b] = image.data.subarray(p * 3, p * 3 + 3);
      if (r !== g || r !== b) unequal++;
    }
    expect(unequal).toBe(0);
  });

  it('BMP decodes (this sharp build has no BMP loader; lib/images/bmp.ts does it)', async () => {
    const sharpReadsBmp = await sharp(readFileSync(path.join(robustness, 'bmp/llama.bmp')))
      .metadata()
      .then(
        () => true,
        () => false,
      );
    console.log(`sharp ${sharp.versions.sharp} decodes BMP itself: ${sharpReadsBmp}`);
    for (const entry of manifest().filter((e) => e.container === 'BMP')) {
      expectRgb(await loadImage(bytesOf(entry), { name: entry.file }), ...entry.stored_size);
    }
  });

  it('every file preprocesses to a 1×3×1024×1024 tensor with the SAM input size', async () => {
    for (const entry of manifest()) {
      const input = preprocess(await loadImage(bytesOf(entry), { name: entry.file }));
      const [width, height] = uprightSize(entry);
      expect(input.originalSize).toEqual([height, width]);
      expect(Math.max(...input.inputSize)).toBe(1024);
      expect(input.tensor.length).toBe(3 * 1024 * 1024);
    }
  });
});
