// SAM's image preprocessing (sam-spec §1): resize the longest side to 1024 with Pillow's
// bilinear filter (resize-longest-side.ts), then, as Sam.preprocess does,
//   x = (x - mean) / std   in float32, per RGB channel, laid out CHW,
// and zero-pad on the bottom and right to 1024×1024. The padding comes *after* normalising,
// so padded pixels are 0 in the normalised space (the mean colour), not black.
//
// Encoders exported with their preprocessing inside the graph (samexporter --use-preprocess)
// take the resized image as float32 HWC in 0..255 instead; preprocessHwc builds that.

import {
  DEFAULT_PILLOW_VERSION,
  ResizeLongestSide,
  type PillowVersion,
  type PixelImage,
  type Size,
} from './resize-longest-side.ts';

/** The encoder's square input side. */
export const SAM_IMAGE_SIZE = 1024;
/** Sam.pixel_mean and Sam.pixel_std, RGB order, on the 0..255 scale. */
export const SAM_PIXEL_MEAN = [123.675, 116.28, 103.53] as const;
export const SAM_PIXEL_STD = [58.395, 57.12, 57.375] as const;

export interface SamPreprocessed {
  /** 1×3×1024×1024 float32, normalised and padded (NCHW). */
  tensor: Float32Array;
  dims: [1, 3, number, number];
  /** [h', w'] of the resized image inside the padded square (the decoder crops to it). */
  inputSize: Size;
  /** [h, w] before resizing (the decoder's `orig_im_size`). */
  originalSize: Size;
}

export interface SamHwcInput {
  /** h'×w'×3 float32 RGB in 0..255, unnormalised and unpadded. */
  tensor: Float32Array;
  dims: [number, number, 3];
  inputSize: Size;
  originalSize: Size;
}

export interface PreprocessOptions {
  /** Longest side after resizing; SAM's encoder wants 1024. */
  targetLength?: number;
  /** Which Pillow release's resize to match (see resize-longest-side.ts). */
  pillowVersion?: PillowVersion;
}

/** Resize, normalise and pad an RGB image into SAM's encoder input. */
export function preprocess(image: PixelImage, options: PreprocessOptions = {}): SamPreprocessed {
  const targetLength = options.targetLength ?? SAM_IMAGE_SIZE;
  const resized = resizeForSam(image, targetLength, options.pillowVersion);
  return {
    tensor: normalizeAndPad(resized, targetLength),
    dims: [1, 3, targetLength, targetLength],
    inputSize: [resized.height, resized.width],
    originalSize: [image.height, image.width],
  };
}

/** Resize only, as float32 HWC: the input of encoders that normalise and pad in the graph. */
export function preprocessHwc(image: PixelImage, options: PreprocessOptions = {}): SamHwcInput {
  const resized = resizeForSam(image, options.targetLength ?? SAM_IMAGE_SIZE, options.pillowVersion);
  return {
    tensor: Float32Array.from(resized.data),
    dims: [resized.height, resized.width, 3],
    inputSize: [resized.height, resized.width],
    originalSize: [image.height, image.width],
  };
}

/**
 * Normalises an already resized RGB image into a zeroed `size`×`size` CHW float32 tensor
 * (top-left aligned, so the padding is on the bottom and right).
 */
export function normalizeAndPad(resized: PixelImage, size = SAM_IMAGE_SIZE): Float32Array {
  checkRgb(resized);
  const { data, width, height } = resized;
  if (width > size || height > size) {
    throw new RangeError(`a ${width}×${height} image does not fit in the ${size}×${size} input`);
  }
  const plane = size * size;
  // Float32Array starts zeroed, which is the padding value.
  const tensor = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    const lut = channelLookup(c);
    for (let y = 0; y < height; y++) {
      const outRow = c * plane + y * size;
      const inRow = y * width * 3 + c;
      for (let x = 0; x < width; x++) tensor[outRow + x] = lut[data[inRow + x * 3]!]!;
    }
  }
  return tensor;
}

function resizeForSam(
  image: PixelImage,
  targetLength: number,
  pillowVersion = DEFAULT_PILLOW_VERSION,
): PixelImage {
  checkRgb(image);
  return new ResizeLongestSide(targetLength, pillowVersion).applyImage(image);
}

const lookups = [0, 1, 2].map(buildLookup);

function channelLookup(channel: number): Float32Array {
  return lookups[channel]!;
}

/**
 * All 256 normalised values of one channel, each computed as float32 the way torch does it:
 * the uint8 pixel is promoted to float32, the float32 mean subtracted (rounded to float32), then
 * divided by the float32 std (rounded to float32). Doing each step in float64 and rounding with
 * Math.fround gives exactly the float32 results, since float64 has more than twice the bits.
 */
function buildLookup(channel: number): Float32Array {
  const mean = Math.fround(SAM_PIXEL_MEAN[channel]!);
  const std = Math.fround(SAM_PIXEL_STD[channel]!);
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(v - mean) / std);
  return lut;
}

function checkRgb(image: PixelImage): void {
  if (image.channels !== 3) throw new RangeError(`SAM needs RGB input, got ${image.channels} channel(s)`);
  if (image.data.length !== image.width * image.height * 3) {
    throw new RangeError(
      `image data has ${image.data.length} bytes, expected ${image.width}×${image.height}×3`,
    );
  }
}
