// loadImage / readImageHeader on synthetic files made with sharp (and BMPs written by hand):
// channel layouts, bit depths, alpha, EXIF orientation, ICC profiles, and the typed errors.
// Real files are covered by test/integration/image-robustness.test.ts.
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeBmp, readBmpHeader } from '../../lib/images/bmp.ts';
import {
  CorruptImageError,
  EmptyImageError,
  ImageDecodeError,
  ImageTooLargeError,
  ImageTooSmallError,
  loadImage,
  readImageHeader,
  UnsupportedImageError,
} from '../../lib/images/image-io.ts';
import { PNG_SIGNATURE, pngBomb, pngChunk } from '../helpers/hand-made-images.ts';

/** Deterministic bytes: top 8 bits of i · 2654435761 (the same pattern as the resize tests). */
function pattern(length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = Math.imul(i, 2654435761) >>> 24;
  return data;
}

function rawInput(width: number, height: number, channels: 1 | 2 | 3 | 4) {
  return { raw: { width, height, channels } };
}

async function png(data: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4): Promise<Buffer> {
  const image = sharp(data, rawInput(width, height, channels));
  // sharp would otherwise store one or two channels as RGB(A).
  return (channels <= 2 ? image.toColourspace('b-w') : image).png().toBuffer();
}

async function expectError<T extends ImageDecodeError>(
  promise: Promise<unknown>,
  type: new (...args: never[]) => T,
  message: RegExp,
): Promise<T> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(type);
  expect((error as Error).message).toMatch(message);
  return error as T;
}

// ---------------------------------------------------------------------------------------------
// Hand-made files
// ---------------------------------------------------------------------------------------------

/** Inserts an iCCP chunk (an embedded ICC profile) right after IHDR, pixels untouched. */
function withIccChunk(file: Buffer, icc: Buffer): Buffer {
  const afterIhdr = PNG_SIGNATURE.length + 8 + 13 + 4;
  const body = Buffer.concat([Buffer.from('p3\0\0', 'latin1'), deflateSync(icc)]);
  return Buffer.concat([file.subarray(0, afterIhdr), pngChunk('iCCP', body), file.subarray(afterIhdr)]);
}

/** Rewrites the size in a JPEG's SOF0 segment, leaving everything else as it was. */
function patchJpegSize(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i < out.length - 9; i++) {
    if (out[i] === 0xff && out[i + 1] === 0xc0) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
  }
  throw new Error('no SOF0 marker');
}

interface BmpSpec {
  width: number;
  height: number;
  bits: 1 | 4 | 8 | 24 | 32;
  topDown?: boolean;
  /** RGB per pixel (24/32-bit) or a palette index per pixel (1/4/8-bit). */
  pixels: number[];
  palette?: Array<[number, number, number]>;
  compression?: number;
  coreHeader?: boolean;
}

/** Writes a BMP the way common encoders do, so the decoder is tested against the format itself. */
function writeBmp(spec: BmpSpec): Buffer {
  const { width, height, bits } = spec;
  const core = spec.coreHeader ?? false;
  const dibSize = core ? 12 : 40;
  const palette = spec.palette ?? [];
  const paletteBytes = palette.length * (core ? 3 : 4);
  const stride = Math.floor((bits * width + 31) / 32) * 4;
  const offset = 14 + dibSize + paletteBytes;
  const file = Buffer.alloc(offset + stride * height);
  file.write('BM', 0, 'latin1');
  file.writeUInt32LE(file.length, 2);
  file.writeUInt32LE(offset, 10);
  file.writeUInt32LE(dibSize, 14);
  if (core) {
    file.writeUInt16LE(width, 18);
    file.writeUInt16LE(height, 20);
    file.writeUInt16LE(1, 22);
    file.writeUInt16LE(bits, 24);
  } else {
    file.writeInt32LE(width, 18);
    file.writeInt32LE(spec.topDown ? -height : height, 22);
    file.writeUInt16LE(1, 26);
    file.writeUInt16LE(bits, 28);
    file.writeUInt32LE(spec.compression ?? 0, 30);
    file.writeUInt32LE(palette.length, 46);
  }
  palette.forEach(([r, g, b], i) => file.set([b, g, r], 14 + dibSize + i * (core ? 3 : 4)));
  for (let y = 0; y < height; y++) {
    const stored = spec.topDown ? y : height - 1 - y;
    writeBmpRow(file, offset + stored * stride, spec, y);
  }
  return file;
}

function writeBmpRow(file: Buffer, at: number, spec: BmpSpec, y: number): void {
  const { width, bits, pixels } = spec;
  for (let x = 0; x < width; x++) {
    if (bits >= 24) {
      const p = (y * width + x) * 3;
      file.set([pixels[p + 2]!, pixels[p + 1]!, pixels[p]!], at + x * (bits / 8));
    } else {
      const perByte = 8 / bits;
      const shift = 8 - bits * ((x % perByte) + 1);
      file[at + Math.floor(x / perByte)]! |= pixels[y * width + x]! << shift;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe('loadImage: channel layouts and depths', () => {
  it('decodes RGB PNG exactly', async () => {
    const data = pattern(7 * 5 * 3);
    const image = await loadImage(await png(data, 7, 5, 3));
    expect([image.width, image.height, image.channels]).toEqual([7, 5, 3]);
    expect(Buffer.from(image.data).equals(data)).toBe(true);
    expect(image.header).toMatchObject({
      format: 'png',
      channels: 3,
      hasAlpha: false,
      bitDepth: 8,
      orientation: 1,
    });
  });

  it('drops alpha and keeps the RGB stored under it (no compositing), even where alpha is 0', async () => {
    const rgba = pattern(6 * 4 * 4);
    for (let p = 0; p < 24; p++) rgba[p * 4 + 3] = p % 3 === 0 ? 0 : 128; // some fully transparent
    const image = await loadImage(await png(rgba, 6, 4, 4));
    expect(image.header).toMatchObject({ channels: 4, hasAlpha: true });
    for (let p = 0; p < 24; p++) {
      expect(Array.from(image.data.subarray(p * 3, p * 3 + 3))).toEqual(
        Array.from(rgba.subarray(p * 4, p * 4 + 3)),
      );
    }
  });

  it('replicates grey into three channels (with and without alpha)', async () => {
    const grey = pattern(9 * 2);
    const image = await loadImage(await png(grey, 9, 2, 1));
    expect(image.header.channels).toBe(1);
    for (let p = 0; p < 18; p++)
      expect(Array.from(image.data.subarray(p * 3, p * 3 + 3))).toEqual([grey[p], grey[p], grey[p]]);

    const greyAlpha = pattern(3 * 2 * 2);
    const withAlpha = await loadImage(await png(greyAlpha, 3, 2, 2));
    expect(withAlpha.header).toMatchObject({ channels: 2, hasAlpha: true });
    for (let p = 0; p < 6; p++) {
      const v = greyAlpha[p * 2];
      expect(Array.from(withAlpha.data.subarray(p * 3, p * 3 + 3))).toEqual([v, v, v]);
    }
  });

  it('keeps the high byte of 16-bit samples', async () => {
    const samples = new Uint16Array([0x12ff, 0x1280, 0x127f, 0xffff, 0x0000, 0x00ff]);
    const file = await sharp(samples, rawInput(2, 1, 3))
      .toColourspace('rgb16')
      .png()
      .toBuffer();
    expect((await readImageHeader(file)).bitDepth).toBe(16);
    const image = await loadImage(file);
    expect(Array.from(image.data)).toEqual([0x12, 0x12, 0x12, 0xff, 0x00, 0x00]);

    const grey = new Uint16Array([0x12ff, 0xff00, 0x8080]);
    const greyFile = await sharp(grey, rawInput(3, 1, 1))
      .toColourspace('grey16')
      .png()
      .toBuffer();
    expect(Array.from((await loadImage(greyFile)).data)).toEqual([18, 18, 18, 255, 255, 255, 128, 128, 128]);
  });

  it('expands palette PNGs', async () => {
    const rgb = Buffer.alloc(8 * 8 * 3);
    for (let p = 0; p < 64; p++) rgb.set(p < 32 ? [200, 10, 10] : [10, 10, 200], p * 3);
    const image = await loadImage(
      await sharp(rgb, rawInput(8, 8, 3))
        .png({ palette: true })
        .toBuffer(),
    );
    expect(Array.from(image.data.subarray(0, 3))).toEqual([200, 10, 10]);
    expect(Array.from(image.data.subarray(189, 192))).toEqual([10, 10, 200]);
  });

  it('converts CMYK JPEG to RGB of the same size and roughly the same colour', async () => {
    const rgb = Buffer.alloc(16 * 8 * 3);
    for (let p = 0; p < 128; p++) rgb.set([200, 30, 60], p * 3);
    const cmyk = await sharp(rgb, rawInput(16, 8, 3))
      .toColourspace('cmyk')
      .jpeg({ quality: 95 })
      .toBuffer();
    const header = await readImageHeader(cmyk);
    expect(header).toMatchObject({ colourSpace: 'cmyk', channels: 4, width: 16, height: 8 });
    const image = await loadImage(cmyk);
    expect([image.width, image.height, image.data.length]).toEqual([16, 8, 16 * 8 * 3]);
    const [r, g, b] = Array.from(image.data.subarray(0, 3));
    expect(Math.abs(r! - 200) + Math.abs(g! - 30) + Math.abs(b! - 60)).toBeLessThan(60); // ICC-based CMYK → sRGB plus JPEG loss
  });

  it('ignores embedded ICC profiles, returning the stored values as cv2 and Pillow do', async () => {
    const data = pattern(8 * 4 * 3);
    const plain = await png(data, 8, 4, 3);
    const p3 = await sharp(plain).withIccProfile('p3').png().toBuffer();
    const icc = (await sharp(p3).metadata()).icc!;
    const tagged = withIccChunk(plain, icc);
    expect((await sharp(tagged).metadata()).icc).toBeDefined();
    const image = await loadImage(tagged);
    expect(Buffer.from(image.data).equals(data)).toBe(true);
  });
});

describe('loadImage: EXIF orientation', () => {
  // Where output pixel (x, y) comes from in the stored W×H image, for each orientation.
  const source: Record<number, (x: number, y: number, w: number, h: number) => [number, number]> = {
    1: (x, y) => [x, y],
    2: (x, y, w) => [w - 1 - x, y],
    3: (x, y, w, h) => [w - 1 - x, h - 1 - y],
    4: (x, y, _w, h) => [x, h - 1 - y],
    5: (x, y) => [y, x],
    6: (x, y, _w, h) => [y, h - 1 - x],
    7: (x, y, w, h) => [w - 1 - y, h - 1 - x],
    8: (x, y, w) => [w - 1 - y, x],
  };

  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    'orientation %i gives the upright pixels and size',
    async (orientation) => {
      const [w, h] = [5, 3];
      const stored = pattern(w * h * 3);
      const file = await sharp(stored, rawInput(w, h, 3))
        .withMetadata({ orientation })
        .png()
        .toBuffer();
      const header = await readImageHeader(file);
      const image = await loadImage(file);
      const [outW, outH] = orientation >= 5 ? [h, w] : [w, h];
      expect(header).toMatchObject({
        orientation,
        storedWidth: w,
        storedHeight: h,
        width: outW,
        height: outH,
      });
      expect([image.width, image.height]).toEqual([outW, outH]);
      for (let y = 0; y < outH; y++) {
        for (let x = 0; x < outW; x++) {
          const [sx, sy] = source[orientation]!(x, y, w, h);
          const got = Array.from(image.data.subarray((y * outW + x) * 3, (y * outW + x) * 3 + 3));
          expect(got).toEqual(Array.from(stored.subarray((sy * w + sx) * 3, (sy * w + sx) * 3 + 3)));
        }
      }
    },
  );
});

describe('loadImage: typed errors', () => {
  it('empty input', async () => {
    const error = await expectError(
      loadImage(Buffer.alloc(0), { name: 'a.jpg' }),
      EmptyImageError,
      /^a\.jpg: .*empty/,
    );
    expect(error.code).toBe('empty');
    expect(error.file).toBe('a.jpg');
  });

  it('text named .jpg', async () => {
    await expectError(
      loadImage(Buffer.from('just some text\n'), { name: 'notes.jpg' }),
      UnsupportedImageError,
      /^notes\.jpg: unsupported image: not a recognised image format/,
    );
  });

  it('vector formats are refused', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>');
    await expectError(loadImage(svg, { name: 'x.svg' }), UnsupportedImageError, /svg files are not read/);
  });

  it('truncated JPEG', async () => {
    const jpeg = await sharp(pattern(64 * 64 * 3), rawInput(64, 64, 3))
      .jpeg()
      .toBuffer();
    await expectError(
      loadImage(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), { name: 'cut.jpg' }),
      CorruptImageError,
      /^cut\.jpg: corrupt or truncated image: .*premature end/i,
    );
  });

  it('a PNG header declaring 30000×30000 is refused before decoding', async () => {
    const bomb = pngBomb(30000, 30000);
    expect(await readImageHeader(bomb)).toMatchObject({ format: 'png', width: 30000, height: 30000 });
    const error = await expectError(
      loadImage(bomb, { name: 'bomb.png', maxPixels: 50_000_000 }),
      ImageTooLargeError,
      /^bomb\.png: the header declares 30000×30000 = 900\.0 MP, over the limit of 50\.0 MP .*refused before decoding/,
    );
    expect([error.width, error.height, error.maxPixels]).toEqual([30000, 30000, 50_000_000]);
  });

  it('a JPEG header declaring 30000×30000 is refused before decoding', async () => {
    const jpeg = await sharp(pattern(16 * 16 * 3), rawInput(16, 16, 3))
      .jpeg()
      .toBuffer();
    const bomb = patchJpegSize(jpeg, 30000, 30000);
    expect(await readImageHeader(bomb)).toMatchObject({ format: 'jpeg', width: 30000, height: 30000 });
    await expectError(loadImage(bomb, { name: 'bomb.jpg' }), ImageTooLargeError, /30000×30000/);
  });

  it('the pixel limit counts all pixels and is configurable', async () => {
    const file = await png(pattern(10 * 10 * 3), 10, 10, 3);
    await expectError(loadImage(file, { maxPixels: 99 }), ImageTooLargeError, /10×10/);
    expect((await loadImage(file, { maxPixels: 100 })).width).toBe(10);
    await expect(loadImage(file, { maxPixels: 0 })).rejects.toThrow(RangeError);
  });

  it('minSide refuses small images; 1×1 is accepted by default', async () => {
    const one = await png(Buffer.from([1, 2, 3]), 1, 1, 3);
    expect(Array.from((await loadImage(one)).data)).toEqual([1, 2, 3]);
    await expectError(
      loadImage(one, { minSide: 2, name: 'dot.png' }),
      ImageTooSmallError,
      /^dot\.png: 1×1 .* 2 px/,
    );
  });
});

describe('BMP', () => {
  const palette: Array<[number, number, number]> = [
    [0, 0, 0],
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 255],
  ];

  it.each([false, true])('24-bit, odd width (row padding), top-down %s', async (topDown) => {
    const [width, height] = [5, 3];
    const pixels = Array.from(pattern(width * height * 3));
    const file = writeBmp({ width, height, bits: 24, topDown, pixels });
    const image = await loadImage(file);
    expect(image.header).toMatchObject({ format: 'bmp', width, height });
    expect(Array.from(image.data)).toEqual(pixels);
  });

  it('32-bit BGRX', () => {
    const pixels = Array.from(pattern(3 * 2 * 3));
    expect(Array.from(decodeBmp(writeBmp({ width: 3, height: 2, bits: 32, pixels })).data)).toEqual(pixels);
  });

  it.each([1, 4, 8] as const)('%i-bit palette', (bits) => {
    const colours = bits === 1 ? 2 : palette.length;
    const [width, height] = [11, 3];
    const indices = Array.from({ length: width * height }, (_, i) => (i * 7) % colours);
    const image = decodeBmp(
      writeBmp({ width, height, bits, pixels: indices, palette: palette.slice(0, colours) }),
    );
    expect(Array.from(image.data)).toEqual(indices.flatMap((i) => palette[i]!));
  });

  it('OS/2 core header', () => {
    const image = decodeBmp(
      writeBmp({ width: 2, height: 2, bits: 8, pixels: [0, 1, 2, 3], palette, coreHeader: true }),
    );
    expect(Array.from(image.data)).toEqual([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]);
  });

  it('refuses RLE and truncated files with typed errors', async () => {
    const rle = writeBmp({ width: 2, height: 2, bits: 8, pixels: [0, 1, 2, 3], palette, compression: 1 });
    await expectError(
      loadImage(rle, { name: 'r.bmp' }),
      UnsupportedImageError,
      /BI_RLE8 BMPs are not supported/,
    );
    const full = writeBmp({ width: 40, height: 40, bits: 24, pixels: Array.from(pattern(4800)) });
    await expectError(
      loadImage(full.subarray(0, 2000), { name: 't.bmp' }),
      CorruptImageError,
      /truncated BMP/,
    );
    await expectError(loadImage(full.subarray(0, 20), { name: 't.bmp' }), CorruptImageError, /truncated BMP/);
  });

  it('checks the BMP pixel limit from the header', async () => {
    const header = Buffer.alloc(54);
    header.write('BM', 0, 'latin1');
    header.writeUInt32LE(54, 10);
    header.writeUInt32LE(40, 14);
    header.writeInt32LE(30000, 18);
    header.writeInt32LE(30000, 22);
    header.writeUInt16LE(24, 28);
    expect(readBmpHeader(header)).toMatchObject({ width: 30000, height: 30000 });
    await expectError(loadImage(header, { name: 'big.bmp' }), ImageTooLargeError, /30000×30000/);
  });
});
