// Gallery pictures for the report: the photo, downscaled to about 480 px wide, with a human mask
// drawn in green and an automatic mask in magenta (a light fill plus a solid outline each, so the
// two stay readable where they overlap), encoded as JPEG with sharp.
//
// The photo is shrunk first and the masks are sampled at the small size (nearest pixel), so the
// outlines are drawn at display resolution and stay crisp instead of being blurred away.
import sharp from 'sharp';
import { loadImage } from '../images/image-io.ts';
import { decodeRle, type Rle } from '../rle.ts';

export const GALLERY_WIDTH = 480;

export type Rgb = readonly [number, number, number];
export const HUMAN_COLOUR: Rgb = [0, 200, 60];
export const AUTO_COLOUR: Rgb = [230, 0, 230];
const IGNORE_COLOUR: Rgb = [255, 200, 0];
const FILL_ALPHA = 0.3;

export interface OverlayLayers {
  human: Rle | null;
  auto: Rle | null;
  /** The region left out of IoU, shown as a faint yellow tint. */
  ignore?: Rle | null;
}

/** The photo's bytes (any format loadImage reads) → a JPEG with the masks drawn on it. */
export async function renderOverlay(
  imageBytes: Uint8Array,
  name: string,
  layers: OverlayLayers,
  maxWidth = GALLERY_WIDTH,
): Promise<Buffer> {
  const { pixels, width, height } = await shrinkPhoto(imageBytes, name, maxWidth);

  const scaled = (rle: Rle | null | undefined) => (rle ? sampleMask(rle, width, height) : null);
  const ignore = scaled(layers.ignore);
  if (ignore) tint(pixels, ignore, IGNORE_COLOUR, 0.25);
  const human = scaled(layers.human);
  const auto = scaled(layers.auto);
  if (human) tint(pixels, human, HUMAN_COLOUR, FILL_ALPHA);
  if (auto) tint(pixels, auto, AUTO_COLOUR, FILL_ALPHA);
  if (human) paint(pixels, outline(human, width, height), HUMAN_COLOUR);
  if (auto) paint(pixels, outline(auto, width, height), AUTO_COLOUR);

  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 82 })
    .toBuffer();
}

/** RGB pixels resized to width×height (sharp); a copy when the size is already right. */
async function resizeRgb(
  data: Uint8Array,
  w: number,
  h: number,
  width: number,
  height: number,
): Promise<Uint8Array> {
  if (w === width && h === height) return Uint8Array.from(data);
  const buffer = await sharp(data, { raw: { width: w, height: h, channels: 3 } })
    .resize(width, height, { fit: 'fill' })
    .raw()
    .toBuffer();
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** The photo decoded and shrunk to at most maxWidth wide (never enlarged), as RGB pixels to draw on. */
export async function shrinkPhoto(
  imageBytes: Uint8Array,
  name: string,
  maxWidth = GALLERY_WIDTH,
): Promise<{ pixels: Uint8Array; width: number; height: number }> {
  const image = await loadImage(imageBytes, { name });
  const width = Math.min(maxWidth, image.width);
  const height = Math.max(1, Math.round((image.height * width) / image.width));
  return { pixels: await resizeRgb(image.data, image.width, image.height, width, height), width, height };
}

/** The mask at width×height, nearest pixel (centre sampling), row-major 0/1. */
export function sampleMask(rle: Rle, width: number, height: number): Uint8Array {
  const [h, w] = rle.size;
  const full = decodeRle(rle);
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / height));
    for (let x = 0; x < width; x++) {
      const sx = Math.min(w - 1, Math.floor(((x + 0.5) * w) / width));
      out[y * width + x] = full[sy * w + sx]!;
    }
  }
  return out;
}

/**
 * Pixels on either side of the mask's edge (a 4-neighbour differs), so the line is 2 px wide and
 * straddles the boundary. The image border counts as outside.
 */
export function outline(mask: Uint8Array, width: number, height: number): Uint8Array {
  const at = (x: number, y: number) =>
    x < 0 || y < 0 || x >= width || y >= height ? 0 : mask[y * width + x]!;
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = at(x, y);
      if (at(x - 1, y) !== v || at(x + 1, y) !== v || at(x, y - 1) !== v || at(x, y + 1) !== v) {
        out[y * width + x] = 1;
      }
    }
  }
  return out;
}

/** Blends `colour` into the pixels under the mask, in place. */
export function tint(pixels: Uint8Array, mask: Uint8Array, colour: Rgb, alpha: number): void {
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    for (let c = 0; c < 3; c++) {
      pixels[i * 3 + c] = Math.round(pixels[i * 3 + c]! * (1 - alpha) + colour[c]! * alpha);
    }
  }
}

/** Sets the pixels under the mask to `colour`, in place (outlines). */
export function paint(pixels: Uint8Array, mask: Uint8Array, colour: Rgb): void {
  tint(pixels, mask, colour, 1);
}
