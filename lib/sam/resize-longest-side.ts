// SAM's ResizeLongestSide transform (segment_anything/utils/transforms.py, sam-spec §1):
// - the target size: scale the longest side to 1024, round half up;
// - the image resize, bit-identical to Pillow's Image.resize(size, BILINEAR) on uint8 pixels,
//   which is what SAM's `resize(to_pil_image(image), ...)` from torchvision runs;
// - the transforms of prompt points and boxes into the resized frame.
//
// Why reimplement Pillow: bilinear resizes are not interchangeable. Pillow widens its filter when
// it shrinks an image (antialiasing), works in fixed point and rounds to uint8 between its two
// passes; sharp/libvips, OpenCV and torch's interpolate all give different pixels, and those
// differences move the embeddings far more than float noise does (sam-spec §6).
//
// The algorithm follows Pillow's src/libImaging/Resample.c (ImagingResample with the bilinear
// filter, box = the whole image):
// 1. For each axis, `precomputeCoefficients` finds for every output pixel the input pixels under
//    the (possibly widened) triangle filter and their normalised weights, then turns the weights
//    into 22-bit fixed point integers.
// 2. Each pass is a 1-D convolution with those integer weights, rounded and clipped to 0..255,
//    so the intermediate image is uint8 just like Pillow's.
// 3. A pass is skipped when its axis keeps its size; which pass runs first depends on the Pillow
//    version (see PillowVersion) and matters because of that intermediate rounding.

/** A row-major (HWC) 8-bit image with `channels` interleaved samples per pixel. */
export interface PixelImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** [height, width], the order SAM uses for sizes. */
export type Size = [number, number];

// ---------------------------------------------------------------------------------------------
// Target size and prompt transforms
// ---------------------------------------------------------------------------------------------

/**
 * SAM's get_preprocess_shape: scale = long / max(h, w) in float64, then int(x + 0.5) per side,
 * i.e. round half up (not Python's round(), which rounds half to even).
 */
export function getPreprocessShape(oldH: number, oldW: number, longSideLength: number): Size {
  checkSide(oldH, 'height');
  checkSide(oldW, 'width');
  checkSide(longSideLength, 'longSideLength');
  const scale = (longSideLength * 1.0) / Math.max(oldH, oldW);
  return [Math.floor(oldH * scale + 0.5), Math.floor(oldW * scale + 0.5)];
}

/** Which pass Pillow runs first when both axes change size. */
export type FirstPass = 'horizontal' | 'vertical';

/**
 * The Pillow releases differ in the order of the two passes (and so, by a rounding, in a few
 * pixels) for portrait images:
 * - 'pillow-legacy' (Pillow <= 12.1, what SAM was developed with): always horizontal first;
 * - 'pillow-12.2' (12.2 and 12.3): vertical first when the height shrinks and the image is more
 *   than 100 times taller than wide (done in Image.resize as two separate resizes);
 * - 'pillow-13' (13.0): vertical first when the height shrinks by more than twice as many pixels
 *   as the width does (ImagingResampleInner's `horizontal_first`).
 * Landscape images and portraits up to 2:1 come out the same under all three.
 */
export type PillowVersion = 'pillow-13' | 'pillow-12.2' | 'pillow-legacy';

/** The Pillow the project's Python side installs (trainer/requirements.in leaves it unpinned). */
export const DEFAULT_PILLOW_VERSION: PillowVersion = 'pillow-13';

/** Maps a Pillow version string such as "12.3.0" to the pass-order rule it uses. */
export function pillowVersionFromString(version: string): PillowVersion {
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (!match) throw new Error(`cannot parse the Pillow version "${version}"`);
  const major = Number(match[1]);
  const minor = Number(match[2]);
  if (major >= 13) return 'pillow-13';
  if (major === 12 && minor >= 2) return 'pillow-12.2';
  return 'pillow-legacy';
}

/** The first pass Pillow `version` runs for an in → out resize (when both passes are needed). */
export function pillowFirstPass(
  version: PillowVersion,
  inW: number,
  inH: number,
  outW: number,
  outH: number,
): FirstPass {
  switch (version) {
    case 'pillow-legacy':
      return 'horizontal';
    case 'pillow-12.2':
      return inH > inW * 100 && outH < inH ? 'vertical' : 'horizontal';
    case 'pillow-13': {
      const shrinkH = inH - outH;
      return shrinkH > 0 && shrinkH > (inW - outW) * 2 ? 'vertical' : 'horizontal';
    }
  }
}

/**
 * SAM's ResizeLongestSide: resizes images so their longest side is `targetLength`, and maps
 * prompt coordinates from the original image into that resized frame.
 */
export class ResizeLongestSide {
  constructor(
    readonly targetLength = 1024,
    readonly pillowVersion: PillowVersion = DEFAULT_PILLOW_VERSION,
  ) {
    checkSide(targetLength, 'targetLength');
  }

  /** [h', w'] for an image of [h, w]. */
  targetSize(originalSize: Size): Size {
    return getPreprocessShape(originalSize[0], originalSize[1], this.targetLength);
  }

  /** apply_image: the Pillow-exact bilinear resize to targetSize. */
  applyImage(image: PixelImage): PixelImage {
    const [h, w] = this.targetSize([image.height, image.width]);
    if (h === 0 || w === 0) {
      // SAM's own formula rounds the short side to 0 beyond 2·targetLength : 1; torchvision fails.
      throw new RangeError(
        `a ${image.width}×${image.height} image is too thin to resize to a longest side of ${this.targetLength} ` +
          `(its short side would round to 0 px)`,
      );
    }
    return resizeBilinearPil(image, w, h, { pillowVersion: this.pillowVersion });
  }

  /**
   * apply_coords on flat [x0, y0, x1, y1, ...] pixel coordinates of an image of `originalSize`.
   * Each axis is scaled by the ratio of its *rounded* new size to its old size (not by the single
   * scale factor), computed first and then multiplied, in float64 as numpy does.
   */
  applyCoords(coords: ArrayLike<number>, originalSize: Size): Float64Array {
    if (coords.length % 2 !== 0)
      throw new RangeError(`coords must be x,y pairs; got ${coords.length} numbers`);
    const [oldH, oldW] = originalSize;
    const [newH, newW] = this.targetSize(originalSize);
    const ratioX = newW / oldW;
    const ratioY = newH / oldH;
    const out = new Float64Array(coords.length);
    for (let i = 0; i < coords.length; i += 2) {
      out[i] = coords[i]! * ratioX;
      out[i + 1] = coords[i + 1]! * ratioY;
    }
    return out;
  }

  /** apply_boxes on flat XYXY boxes [x0, y0, x1, y1, ...]: each box is two corner points. */
  applyBoxes(boxes: ArrayLike<number>, originalSize: Size): Float64Array {
    if (boxes.length % 4 !== 0)
      throw new RangeError(`boxes must be x0,y0,x1,y1; got ${boxes.length} numbers`);
    return this.applyCoords(boxes, originalSize);
  }
}

// ---------------------------------------------------------------------------------------------
// Pillow-exact bilinear resize
// ---------------------------------------------------------------------------------------------

/** 8 bits for the result, 2 spare bits for overflow of filters with negative lobes. */
const PRECISION_BITS = 32 - 8 - 2;
const FIXED_ONE = 2 ** PRECISION_BITS;
/** Added before the final shift so that it rounds to nearest instead of truncating. */
const ROUNDING = 1 << (PRECISION_BITS - 1);
/** The bilinear (triangle) filter reaches one input pixel either side at scale 1. */
const BILINEAR_SUPPORT = 1.0;

/** For every output pixel: the first input pixel, how many it reads, and their weights. */
export interface ResampleCoefficients {
  /** Weights per output pixel (slots beyond `count` are 0). */
  ksize: number;
  /** Per output pixel: [first input index, number of input pixels]. */
  bounds: Int32Array;
  /** outSize × ksize weights in fixed point (sum ≈ 2^22). */
  weights: Int32Array;
}

export interface ResizeOptions {
  /** Which Pillow release to match (pass order); default DEFAULT_PILLOW_VERSION. */
  pillowVersion?: PillowVersion;
  /** Force the pass order instead of deriving it from pillowVersion (for tests and experiments). */
  firstPass?: FirstPass;
}

/**
 * Resizes like Pillow's `Image.resize((outW, outH), Image.BILINEAR)` with no box and no
 * reducing_gap, byte for byte, for any number of 8-bit channels (RGB: 3, grey: 1).
 * Note Pillow resizes RGBA in premultiplied form; this function does not, so pass RGBA only if
 * the alpha is opaque or you want straight (non-premultiplied) filtering.
 */
export function resizeBilinearPil(
  image: PixelImage,
  outW: number,
  outH: number,
  options: ResizeOptions = {},
): PixelImage {
  checkImage(image);
  checkSide(outW, 'output width');
  checkSide(outH, 'output height');
  const { width: inW, height: inH } = image;
  const needHorizontal = outW !== inW;
  const needVertical = outH !== inH;
  const first =
    options.firstPass ??
    pillowFirstPass(options.pillowVersion ?? DEFAULT_PILLOW_VERSION, inW, inH, outW, outH);

  let current = image;
  const horizontal = () => {
    if (needHorizontal) current = resampleHorizontal(current, outW, precomputeCoefficients(inW, outW));
  };
  const vertical = () => {
    if (needVertical) current = resampleVertical(current, outH, precomputeCoefficients(inH, outH));
  };
  if (first === 'horizontal') {
    horizontal();
    vertical();
  } else {
    vertical();
    horizontal();
  }
  // Like Pillow, an unchanged size still returns a copy, never the caller's buffer.
  return current === image ? { ...image, data: image.data.slice() } : current;
}

/**
 * Pillow's precompute_coeffs for the whole-image box [0, inSize) → outSize, then the 8-bit
 * normalisation to fixed point (normalize_coeffs_8bpc). Every step keeps Pillow's float64
 * arithmetic and its order of operations, since the truncations to int depend on the last bit.
 */
export function precomputeCoefficients(inSize: number, outSize: number): ResampleCoefficients {
  checkSide(inSize, 'input size');
  checkSide(outSize, 'output size');
  // Pillow gets the box edges as C floats; they are exact for any side below 2^24.
  const scale = inSize / outSize;
  // When shrinking, the filter is stretched to cover every input pixel (antialiasing).
  const filterScale = Math.max(scale, 1.0);
  const support = BILINEAR_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const invFilterScale = 1.0 / filterScale;

  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const taps = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // (int)(v + 0.5) in C truncates toward zero; negative starts are then clamped to 0.
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const count = xmax - xmin;
    let sum = 0.0;
    for (let x = 0; x < count; x++) {
      const w = bilinearFilter((x + xmin - center + 0.5) * invFilterScale);
      taps[x] = w;
      sum += w;
    }
    for (let x = 0; x < count; x++) {
      const normalised = sum !== 0.0 ? taps[x]! / sum : taps[x]!;
      weights[xx * ksize + x] = toFixedPoint(normalised);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = count;
  }
  return { ksize, bounds, weights };
}

/** The triangle filter: 1 at the centre, 0 at distance 1 and beyond. */
function bilinearFilter(x: number): number {
  const d = Math.abs(x);
  return d < 1.0 ? 1.0 - d : 0.0;
}

/** Rounds half away from zero, as normalize_coeffs_8bpc does with (int)(±0.5 + w·2^22). */
function toFixedPoint(weight: number): number {
  return weight < 0 ? Math.trunc(-0.5 + weight * FIXED_ONE) : Math.trunc(0.5 + weight * FIXED_ONE);
}

/** Drops the fixed-point fraction and clips to 0..255 (Pillow's clip8 lookup table). */
function clip8(accumulator: number): number {
  const v = accumulator >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Resamples every row to `outW` pixels. */
function resampleHorizontal(image: PixelImage, outW: number, coeffs: ResampleCoefficients): PixelImage {
  const { width: inW, height, channels } = image;
  const out = new Uint8Array(outW * height * channels);
  for (let y = 0; y < height; y++) {
    const inRow = image.data.subarray(y * inW * channels, (y + 1) * inW * channels);
    const outRow = out.subarray(y * outW * channels, (y + 1) * outW * channels);
    if (channels === 3) resampleRgbRow(inRow, outRow, coeffs);
    else resampleRow(inRow, outRow, channels, coeffs);
  }
  return { data: out, width: outW, height, channels };
}

/** One row of RGB pixels; the three channels share each weight (the hot path). */
function resampleRgbRow(src: Uint8Array, out: Uint8Array, coeffs: ResampleCoefficients): void {
  const { ksize, bounds, weights } = coeffs;
  const outW = out.length / 3;
  for (let xx = 0; xx < outW; xx++) {
    const count = bounds[xx * 2 + 1]!;
    let p = bounds[xx * 2]! * 3;
    let k = xx * ksize;
    // Sums stay below 2^31 for non-negative weights, so plain numbers are exact here.
    let r = ROUNDING;
    let g = ROUNDING;
    let b = ROUNDING;
    for (let x = 0; x < count; x++, p += 3, k++) {
      const w = weights[k]!;
      r += src[p]! * w;
      g += src[p + 1]! * w;
      b += src[p + 2]! * w;
    }
    out[xx * 3] = clip8(r);
    out[xx * 3 + 1] = clip8(g);
    out[xx * 3 + 2] = clip8(b);
  }
}

/** One row of pixels with any number of channels. */
function resampleRow(src: Uint8Array, out: Uint8Array, channels: number, coeffs: ResampleCoefficients): void {
  const { ksize, bounds, weights } = coeffs;
  const outW = out.length / channels;
  for (let xx = 0; xx < outW; xx++) {
    const first = bounds[xx * 2]! * channels;
    const count = bounds[xx * 2 + 1]!;
    for (let c = 0; c < channels; c++) {
      let acc = ROUNDING;
      for (let x = 0, p = first + c; x < count; x++, p += channels) acc += src[p]! * weights[xx * ksize + x]!;
      out[xx * channels + c] = clip8(acc);
    }
  }
}

/** Resamples every column to `outH` pixels, a whole row at a time for cache-friendly access. */
function resampleVertical(image: PixelImage, outH: number, coeffs: ResampleCoefficients): PixelImage {
  const { data: src, width, channels } = image;
  const { ksize, bounds, weights } = coeffs;
  const rowLength = width * channels;
  const out = new Uint8Array(outH * rowLength);
  const acc = new Int32Array(rowLength);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2]!;
    const count = bounds[yy * 2 + 1]!;
    acc.fill(ROUNDING);
    for (let y = 0; y < count; y++) {
      const weight = weights[yy * ksize + y]!;
      const inRow = (ymin + y) * rowLength;
      for (let i = 0; i < rowLength; i++) acc[i] = acc[i]! + src[inRow + i]! * weight;
    }
    const outRow = yy * rowLength;
    for (let i = 0; i < rowLength; i++) out[outRow + i] = clip8(acc[i]!);
  }
  return { data: out, width, height: outH, channels };
}

function checkSide(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 1)
    throw new RangeError(`${what} must be a positive integer, got ${value}`);
}

function checkImage(image: PixelImage): void {
  checkSide(image.width, 'image width');
  checkSide(image.height, 'image height');
  checkSide(image.channels, 'image channels');
  const expected = image.width * image.height * image.channels;
  if (image.data.length !== expected) {
    throw new RangeError(
      `image data has ${image.data.length} bytes, expected ${image.width}×${image.height}×${image.channels} = ${expected}`,
    );
  }
}
