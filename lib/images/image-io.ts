// Image decoding for the data engine: any supported file → 8-bit RGB, HWC, upright.
//
// Choices, each made to match what SAM's own scripts feed the model (scripts/amg.py reads with
// cv2.imread(path) and converts BGR → RGB; Pillow's Image.open(...).convert('RGB') agrees):
// - EXIF orientation is applied (cv2.imread does so by default), so sizes are the displayed ones.
// - Alpha is dropped, not composited: cv2.imread without IMREAD_UNCHANGED and Pillow's
//   convert('RGB') both keep the RGB stored under the alpha, so fully transparent pixels keep
//   whatever colour the file holds. Compositing onto white would feed SAM pixels it never saw.
// - Grey is replicated to three channels; palettes are expanded.
// - 16-bit samples keep their high byte (libvips' 16 → 8-bit cast, like cv2's png_set_strip_16
//   and Pillow's "RGB;16B" decoding).
// - Embedded ICC profiles are ignored (neither cv2 nor Pillow colour-manages on load). CMYK has
//   no raw RGB, so it goes through libvips' CMYK → sRGB conversion; expect small differences
//   from cv2/Pillow, which use a naive formula.
// - BMP is decoded by lib/images/bmp.ts, because this sharp build has no BMP loader.
//
// Safety: the file's length is checked against `maxBytes` first (callers that can HEAD an object
// call checkImageBytes before downloading it). Then the size is read from the header and checked
// against `maxPixels` before any pixel is decoded, so a tiny file declaring 30000×30000 (a
// decompression bomb) costs nothing;
// sharp's own `limitInputPixels` is set to the same limit as a second line of defence. Vector
// and exotic formats (SVG, PDF, FITS, ...) are refused. Every failure is an ImageDecodeError
// subclass whose message names the file and says what is wrong.

import sharp, { type Metadata } from 'sharp';
import { BmpError, decodeBmp, isBmp, readBmpHeader, type BmpHeader } from './bmp.ts';
import type { PixelImage } from '../sam/resize-longest-side.ts';

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

export type ImageErrorCode =
  'empty' | 'unsupported' | 'corrupt' | 'too-large' | 'too-many-bytes' | 'too-small';

/** Base class of every decoding failure; `file` is the name given to loadImage (or "image"). */
export class ImageDecodeError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
    this.name = new.target.name;
  }
}

export class EmptyImageError extends ImageDecodeError {
  constructor(file: string) {
    super('empty', file, 'the file is empty (0 bytes)');
  }
}

/** Not an image, or a format this engine does not read. */
export class UnsupportedImageError extends ImageDecodeError {
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super('unsupported', file, `unsupported image: ${reason}`, options);
  }
}

/** A recognised format whose header or pixel data is broken or truncated. */
export class CorruptImageError extends ImageDecodeError {
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super('corrupt', file, `corrupt or truncated image: ${reason}`, options);
  }
}

export class ImageTooLargeError extends ImageDecodeError {
  constructor(
    file: string,
    readonly width: number,
    readonly height: number,
    readonly maxPixels: number,
  ) {
    super(
      'too-large',
      file,
      `the header declares ${width}×${height} = ${megapixels(width * height)} MP, over the limit of ` +
        `${megapixels(maxPixels)} MP (maxPixels ${maxPixels}); refused before decoding`,
    );
  }
}

/** The file itself is bigger than the byte limit: refused before it is downloaded or decoded. */
export class ImageFileTooLargeError extends ImageDecodeError {
  constructor(
    file: string,
    readonly bytes: number,
    readonly maxBytes: number,
  ) {
    super(
      'too-many-bytes',
      file,
      `the file is ${mebibytes(bytes)} MiB, over the ${mebibytes(maxBytes)} MiB limit ` +
        `(stage3.maxImageBytes = ${maxBytes}); refused before decoding`,
    );
  }
}

export class ImageTooSmallError extends ImageDecodeError {
  constructor(
    file: string,
    readonly width: number,
    readonly height: number,
    readonly minSide: number,
  ) {
    super('too-small', file, `${width}×${height} has a side shorter than the minimum of ${minSide} px`);
  }
}

function megapixels(pixels: number): string {
  return (pixels / 1e6).toFixed(1);
}

function mebibytes(bytes: number): string {
  const mib = bytes / 2 ** 20;
  return Number.isInteger(mib) ? String(mib) : mib.toFixed(1);
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/** Raster formats we decode; anything else sharp recognises (SVG, PDF, FITS, ...) is refused. */
const SUPPORTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'tiff', 'gif', 'heif', 'jp2', 'jxl', 'ppm', 'bmp']);

/** Bits per sample we can turn into 8-bit RGB without guessing a value range. */
const SUPPORTED_DEPTHS: Record<string, number> = { uchar: 8, char: 8, ushort: 16, short: 16 };

export interface ImageHeader {
  /** Container format as detected from the bytes (not the file name): "jpeg", "png", "bmp", ... */
  format: string;
  /** Size after applying the EXIF orientation: what loadImage returns. */
  width: number;
  height: number;
  /** Size as stored (before orientation). */
  storedWidth: number;
  storedHeight: number;
  /** EXIF orientation 1..8 (1 when absent or invalid). 5..8 swap width and height. */
  orientation: number;
  /** Channels as stored, alpha included (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA or CMYK, ...). */
  channels: number;
  hasAlpha: boolean;
  /** Bits per sample as stored (8 or 16 for everything loadImage accepts). */
  bitDepth: number;
  /** libvips' name for the colour space: "srgb", "b-w", "cmyk", "rgb16", ... */
  colourSpace: string;
}

export interface HeaderOptions {
  /** Used in error messages, e.g. the object key or file path. */
  name?: string;
}

/**
 * Reads the header only (no pixel decoding): format, size (also after orientation), channels.
 * Cheap enough for dry runs over a whole bucket. Throws the same typed errors as loadImage.
 */
export async function readImageHeader(bytes: Uint8Array, options: HeaderOptions = {}): Promise<ImageHeader> {
  const name = options.name ?? 'image';
  if (bytes.length === 0) throw new EmptyImageError(name);
  if (isBmp(bytes)) return bmpImageHeader(withBmpErrors(name, () => readBmpHeader(bytes)));

  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw sharpError(name, error);
  }
  return headerFromMetadata(name, metadata);
}

function headerFromMetadata(name: string, m: Metadata): ImageHeader {
  const format = String(m.format ?? 'unknown');
  if (!SUPPORTED_FORMATS.has(format)) {
    throw new UnsupportedImageError(
      name,
      `${format} files are not read (raster formats only: ${[...SUPPORTED_FORMATS].join(', ')})`,
    );
  }
  if (!m.width || !m.height) throw new CorruptImageError(name, `the ${format} header has no size`);
  const bitDepth = SUPPORTED_DEPTHS[m.depth ?? 'uchar'];
  if (bitDepth === undefined) {
    throw new UnsupportedImageError(name, `${m.depth} samples are not supported (8 or 16-bit integers only)`);
  }
  const orientation = validOrientation(m.orientation);
  const [width, height] = orientedSize(m.width, m.height, orientation);
  return {
    format,
    width,
    height,
    storedWidth: m.width,
    storedHeight: m.height,
    orientation,
    channels: m.channels ?? 3,
    hasAlpha: m.hasAlpha ?? false,
    bitDepth,
    colourSpace: String(m.space ?? 'srgb'),
  };
}

/** BMP palettes are expanded to RGB on decoding, so every BMP reads as 3 channels of 8 bits. */
function bmpImageHeader(h: BmpHeader): ImageHeader {
  return {
    format: 'bmp',
    width: h.width,
    height: h.height,
    storedWidth: h.width,
    storedHeight: h.height,
    orientation: 1,
    channels: 3,
    hasAlpha: false,
    bitDepth: 8,
    colourSpace: 'srgb',
  };
}

/** EXIF allows 1..8; 0 or garbage (seen in the wild) means "no rotation", as libvips treats it. */
function validOrientation(orientation: number | undefined): number {
  return orientation !== undefined && orientation >= 1 && orientation <= 8 ? orientation : 1;
}

/** Orientations 5..8 include a 90° turn, which swaps width and height. */
function orientedSize(width: number, height: number, orientation: number): [number, number] {
  return orientation >= 5 ? [height, width] : [width, height];
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/**
 * The one default pixel limit (the run config's stage3.maxImagePixels defaults to it): a
 * decompression-bomb guard. 120 MP admits every current camera (100-megapixel medium format is
 * 11656×8736 = 102 MP; SA-1B originals average 16 MP) while refusing the giga-pixel images bombs
 * decode to; a decoded 120 MP RGBA image is 480 MB, so a batch of 8 still fits a 16 GB worker.
 */
export const DEFAULT_MAX_PIXELS = 120_000_000;

/**
 * The one default byte limit of an image file (stage3.maxImageBytes): far above any camera file
 * (a 102 MP 16-bit TIFF is ~600 MB uncompressed, but JPEGs and PNGs of it are well under 256 MiB),
 * and it bounds what one prefetched image can cost a worker before its header is even read.
 */
export const DEFAULT_MAX_IMAGE_BYTES = 256 * 2 ** 20;

export interface LoadImageOptions extends HeaderOptions {
  /** Refuse images with more pixels than this (checked from the header). Default 120 MP. */
  maxPixels?: number;
  /** Refuse files bigger than this, before reading their header. Default 256 MiB. */
  maxBytes?: number;
  /** Refuse images with a side shorter than this. Default 1: SAM handles even 1×1 (by upsampling). */
  minSide?: number;
}

/** An upright 8-bit RGB image (HWC) plus what the file looked like. */
export interface DecodedImage extends PixelImage {
  channels: 3;
  /** The header as read before decoding (format, stored size, orientation, stored channels). */
  header: ImageHeader;
}

/** Decodes any supported image to upright 8-bit RGB; see the top of this file for the choices. */
export async function loadImage(bytes: Uint8Array, options: LoadImageOptions = {}): Promise<DecodedImage> {
  const name = options.name ?? 'image';
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const minSide = options.minSide ?? 1;
  checkLimit(maxPixels, 'maxPixels');
  checkLimit(minSide, 'minSide');
  checkImageBytes(name, bytes.length, options.maxBytes ?? DEFAULT_MAX_IMAGE_BYTES);

  const header = await readImageHeader(bytes, { name });
  if (header.storedWidth * header.storedHeight > maxPixels) {
    throw new ImageTooLargeError(name, header.storedWidth, header.storedHeight, maxPixels);
  }
  if (Math.min(header.width, header.height) < minSide) {
    throw new ImageTooSmallError(name, header.width, header.height, minSide);
  }

  const rgb =
    header.format === 'bmp'
      ? withBmpErrors(name, () => decodeBmp(bytes))
      : await decodeWithSharp(bytes, maxPixels, name);
  checkDecodedSize(name, rgb, header);
  return { data: rgb.data, width: rgb.width, height: rgb.height, channels: 3, header };
}

/** Throws ImageFileTooLargeError if a file of `bytes` bytes is over `maxBytes` (e.g. from a HEAD). */
export function checkImageBytes(
  name: string,
  bytes: number,
  maxBytes: number = DEFAULT_MAX_IMAGE_BYTES,
): void {
  checkLimit(maxBytes, 'maxBytes');
  if (bytes > maxBytes) throw new ImageFileTooLargeError(name, bytes, maxBytes);
}

interface RawRgb {
  data: Uint8Array;
  width: number;
  height: number;
}

async function decodeWithSharp(bytes: Uint8Array, maxPixels: number, name: string): Promise<RawRgb> {
  try {
    const { data, info } = await sharp(bytes, {
      // 'error' also rejects truncated files; the stricter default 'warning' would also reject
      // the many harmless JPEG warnings (e.g. extraneous bytes) that cv2 and Pillow accept.
      failOn: 'error',
      limitInputPixels: Number.isFinite(maxPixels) ? maxPixels : false,
      ignoreIcc: true,
    })
      .autoOrient()
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3)
      throw new CorruptImageError(name, `decoded to ${info.channels} channels instead of RGB`);
    const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { data: pixels, width: info.width, height: info.height };
  } catch (error) {
    throw sharpError(name, error);
  }
}

/** Never hand back an image whose size disagrees with its header. */
function checkDecodedSize(name: string, rgb: RawRgb, header: ImageHeader): void {
  if (
    rgb.width !== header.width ||
    rgb.height !== header.height ||
    rgb.data.length !== rgb.width * rgb.height * 3
  ) {
    throw new CorruptImageError(
      name,
      `decoded ${rgb.width}×${rgb.height} (${rgb.data.length} bytes) but the header says ${header.width}×${header.height}`,
    );
  }
}

function checkLimit(value: number, what: string): void {
  if (!(value === Infinity || (Number.isInteger(value) && value >= 1))) {
    throw new RangeError(`${what} must be a positive integer or Infinity, got ${value}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Error translation
// ---------------------------------------------------------------------------------------------

/** Turns sharp's plain Errors into our typed ones, keeping the original as `cause`. */
function sharpError(name: string, error: unknown): ImageDecodeError {
  if (error instanceof ImageDecodeError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const detail = message.split('\n')[0]!.trim();
  if (/unsupported image format/i.test(message)) {
    return new UnsupportedImageError(
      name,
      'not a recognised image format (the content, not the file name, decides)',
      {
        cause: error,
      },
    );
  }
  return new CorruptImageError(name, detail, { cause: error });
}

function withBmpErrors<T>(name: string, action: () => T): T {
  try {
    return action();
  } catch (error) {
    if (!(error instanceof BmpError)) throw error;
    if (error.kind === 'unsupported') throw new UnsupportedImageError(name, error.message, { cause: error });
    throw new CorruptImageError(name, error.message, { cause: error });
  }
}
