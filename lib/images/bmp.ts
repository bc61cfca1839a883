// A small decoder for uncompressed Windows BMP files.
//
// Why it exists: the sharp (libvips) build we ship cannot read BMP, yet the GrabCut benchmark
// stores its photos and masks as .bmp and users have BMPs too. Only the common, simple layouts
// are supported; everything else is refused with a clear reason instead of being guessed at:
//
// - 24-bit BGR and 32-bit BGRX (BI_RGB, the 4th byte is dropped like any alpha, see image-io.ts);
// - 1, 4 and 8-bit palettised images (the GrabCut masks are 8-bit with a grey palette);
// - bottom-up (positive height, the usual case) and top-down (negative height) row order.
//
// RLE-compressed, bit-field (16-bit, masked 32-bit) and embedded JPEG/PNG BMPs are refused.
//
// Layout reminder: 14-byte file header ("BM", size, reserved, offset of the pixels), then a DIB
// header whose first uint32 is its own size (12 = OS/2 core header, 40+ = BITMAPINFOHEADER and
// its v2-v5 extensions), then the palette, then rows padded to a multiple of 4 bytes.

/** Why a BMP could not be decoded; image-io.ts turns it into its typed errors. */
export class BmpError extends Error {
  constructor(
    message: string,
    readonly kind: 'unsupported' | 'corrupt',
  ) {
    super(message);
    this.name = 'BmpError';
  }
}

export interface BmpHeader {
  width: number;
  height: number;
  bitsPerPixel: number;
  /** True when the first stored row is the top one (negative height in the file). */
  topDown: boolean;
  /** Byte offset of the first stored pixel row. */
  pixelOffset: number;
  /** Bytes per stored row, including the padding to a multiple of 4. */
  rowStride: number;
  /** Palette entries (0 for 24/32-bit images). */
  paletteSize: number;
  paletteOffset: number;
  /** 3 for the OS/2 core header (BGR), 4 otherwise (BGR + reserved). */
  paletteEntryBytes: number;
}

export interface BmpImage {
  /** RGB, row-major, top row first. */
  data: Uint8Array;
  width: number;
  height: number;
}

const FILE_HEADER_BYTES = 14;
const CORE_HEADER_BYTES = 12;
const INFO_HEADER_BYTES = 40;
const BI_RGB = 0;
const COMPRESSION_NAMES = ['BI_RGB', 'BI_RLE8', 'BI_RLE4', 'BI_BITFIELDS', 'BI_JPEG', 'BI_PNG'];
const SUPPORTED_BITS = [1, 4, 8, 24, 32];

/** True when the bytes start with the BMP signature "BM". */
export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

/** Parses and validates the headers without touching the pixels. */
export function readBmpHeader(bytes: Uint8Array): BmpHeader {
  if (!isBmp(bytes)) throw new BmpError('not a BMP file (no "BM" signature)', 'unsupported');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  requireBytes(bytes, FILE_HEADER_BYTES + 4, 'the file header');
  const pixelOffset = view.getUint32(10, true);
  const dibSize = view.getUint32(FILE_HEADER_BYTES, true);
  if (dibSize !== CORE_HEADER_BYTES && dibSize < INFO_HEADER_BYTES) {
    throw new BmpError(`unknown BMP header size ${dibSize}`, 'corrupt');
  }
  requireBytes(bytes, FILE_HEADER_BYTES + dibSize, 'the DIB header');

  const core = dibSize === CORE_HEADER_BYTES;
  const at = FILE_HEADER_BYTES;
  const width = core ? view.getUint16(at + 4, true) : view.getInt32(at + 4, true);
  const signedHeight = core ? view.getUint16(at + 6, true) : view.getInt32(at + 8, true);
  const bitsPerPixel = view.getUint16(at + (core ? 10 : 14), true);
  const compression = core ? BI_RGB : view.getUint32(at + 16, true);
  const colorsUsed = core ? 0 : view.getUint32(at + 32, true);

  checkLayout(width, signedHeight, bitsPerPixel, compression);
  const height = Math.abs(signedHeight);
  const rowStride = Math.floor((bitsPerPixel * width + 31) / 32) * 4;
  const paletteOffset = FILE_HEADER_BYTES + dibSize;
  const paletteEntryBytes = core ? 3 : 4;
  const paletteSize =
    bitsPerPixel <= 8
      ? paletteEntries(bitsPerPixel, colorsUsed, (pixelOffset - paletteOffset) / paletteEntryBytes)
      : 0;
  const header: BmpHeader = {
    width,
    height,
    bitsPerPixel,
    topDown: signedHeight < 0,
    pixelOffset,
    rowStride,
    paletteSize,
    paletteOffset,
    paletteEntryBytes,
  };
  return header;
}

/** Decodes to RGB. Call readBmpHeader first when the size must be checked before allocating. */
export function decodeBmp(bytes: Uint8Array, header: BmpHeader = readBmpHeader(bytes)): BmpImage {
  const { width, height, rowStride, pixelOffset } = header;
  // The last row only needs its pixels, not its padding (some writers drop the final padding).
  const lastRowBytes = Math.ceil((header.bitsPerPixel * width) / 8);
  requireBytes(bytes, pixelOffset + rowStride * (height - 1) + lastRowBytes, 'the pixel data');
  const palette = header.paletteSize > 0 ? readPalette(bytes, header) : undefined;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const storedRow = header.topDown ? y : height - 1 - y;
    const rowStart = pixelOffset + storedRow * rowStride;
    const out = data.subarray(y * width * 3, (y + 1) * width * 3);
    if (palette) decodePalettedRow(bytes, rowStart, header.bitsPerPixel, palette, out);
    else decodeDirectRow(bytes, rowStart, header.bitsPerPixel / 8, out);
  }
  return { data, width, height };
}

function checkLayout(width: number, signedHeight: number, bitsPerPixel: number, compression: number): void {
  if (width <= 0 || signedHeight === 0) {
    throw new BmpError(`BMP declares an empty or negative size ${width}×${signedHeight}`, 'corrupt');
  }
  if (compression !== BI_RGB) {
    const name = COMPRESSION_NAMES[compression] ?? `compression ${compression}`;
    throw new BmpError(`${name} BMPs are not supported (only uncompressed BI_RGB)`, 'unsupported');
  }
  if (!SUPPORTED_BITS.includes(bitsPerPixel)) {
    throw new BmpError(`${bitsPerPixel}-bit BMPs are not supported (only 1, 4, 8, 24, 32)`, 'unsupported');
  }
}

/**
 * A palette may list fewer colours than the bit depth allows (0 means "all of them"), and some
 * writers (notably of OS/2 headers, which have no count) store fewer entries than that: never
 * read past the space between the headers and the pixels.
 */
function paletteEntries(bitsPerPixel: number, colorsUsed: number, roomForEntries: number): number {
  const max = 1 << bitsPerPixel;
  const declared = colorsUsed === 0 || colorsUsed > max ? max : colorsUsed;
  const room = Math.floor(roomForEntries);
  return room > 0 ? Math.min(declared, room) : declared;
}

/** Returns a full 256-entry RGB table so out-of-range indices read as black, not past the end. */
function readPalette(bytes: Uint8Array, header: BmpHeader): Uint8Array {
  const { paletteOffset, paletteSize, paletteEntryBytes } = header;
  requireBytes(bytes, paletteOffset + paletteSize * paletteEntryBytes, 'the palette');
  const rgb = new Uint8Array(256 * 3);
  for (let i = 0; i < paletteSize; i++) {
    const at = paletteOffset + i * paletteEntryBytes;
    rgb[i * 3] = bytes[at + 2]!;
    rgb[i * 3 + 1] = bytes[at + 1]!;
    rgb[i * 3 + 2] = bytes[at]!;
  }
  return rgb;
}

/** Palette indices are packed most significant bits first (8, 2 or 1 pixels per byte). */
function decodePalettedRow(
  bytes: Uint8Array,
  rowStart: number,
  bitsPerPixel: number,
  palette: Uint8Array,
  out: Uint8Array,
): void {
  const width = out.length / 3;
  const perByte = 8 / bitsPerPixel;
  const mask = (1 << bitsPerPixel) - 1;
  for (let x = 0; x < width; x++) {
    const byte = bytes[rowStart + Math.floor(x / perByte)]!;
    const shift = 8 - bitsPerPixel * ((x % perByte) + 1);
    const index = (byte >> shift) & mask;
    out[x * 3] = palette[index * 3]!;
    out[x * 3 + 1] = palette[index * 3 + 1]!;
    out[x * 3 + 2] = palette[index * 3 + 2]!;
  }
}

/** 24-bit pixels are stored B, G, R; 32-bit ones B, G, R, X. */
function decodeDirectRow(bytes: Uint8Array, rowStart: number, bytesPerPixel: number, out: Uint8Array): void {
  const width = out.length / 3;
  for (let x = 0, at = rowStart; x < width; x++, at += bytesPerPixel) {
    out[x * 3] = bytes[at + 2]!;
    out[x * 3 + 1] = bytes[at + 1]!;
    out[x * 3 + 2] = bytes[at]!;
  }
}

function requireBytes(bytes: Uint8Array, needed: number, what: string): void {
  if (bytes.length < needed) {
    throw new BmpError(
      `truncated BMP: ${what} needs ${needed} bytes, the file has ${bytes.length}`,
      'corrupt',
    );
  }
}
