// Release copies of the dataset's images, as SA-1B was published: downscaled so that the SHORTEST
// side is 1500 px (by default), upright, as JPEG. Images already that small are re-encoded at their
// own size, never upscaled. Masks stay at the resolution stage 3 saw; the manifest records the
// scale per image so a user can map between the two.
import sharp from 'sharp';
import { DEFAULT_MAX_IMAGE_BYTES, loadImage } from '../images/image-io.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { runLayout } from '../run-layout.ts';
import type { DoneLine } from './masks-file.ts';

/** High enough to keep fine detail for annotation work; fixed so reruns write the same bytes. */
const JPEG_QUALITY = 90;

export interface ReleaseSize {
  width: number;
  height: number;
  /** Release size / original size (the short side exactly; the long side up to rounding). */
  scale: number;
}

export interface ReleaseCopy {
  key: string;
  scale: number;
}

/** The release size of a width×height image: shortest side `shortestSide`, or unchanged if smaller. */
export function releaseSize(width: number, height: number, shortestSide: number): ReleaseSize {
  const short = Math.min(width, height);
  if (short <= shortestSide) return { width, height, scale: 1 };
  const scale = shortestSide / short;
  return width <= height
    ? { width: shortestSide, height: Math.round(height * scale), scale }
    : { width: Math.round(width * scale), height: shortestSide, scale };
}

export interface ReleaseCopyLimits {
  /** Default: the pixels stage 3 decoded (w × h of the line), so a file replaced since then by a
   * bigger one (or a decompression bomb) is refused from its header, before any pixel is decoded. */
  maxPixels?: number;
  /** Default: DEFAULT_MAX_IMAGE_BYTES (stage3.maxImageBytes' default). */
  maxBytes?: number;
}

/** Writes runs/<run>/dataset/images/<id>.jpg for one segmented image. */
export async function writeReleaseCopy(
  out: ObjectStore,
  stores: StoreCache,
  runId: string,
  line: DoneLine,
  shortestSide: number,
  limits: ReleaseCopyLimits = {},
): Promise<ReleaseCopy> {
  const { store, key: sourceKey } = stores.locate(line.key);
  // loadImage decodes exactly as stage 3 did (EXIF orientation applied, any supported format),
  // so the copy is the picture the masks were drawn on, and under the same kind of limits: the
  // file may have changed since stage 3 read it.
  const image = await loadImage(await store.get(sourceKey), {
    name: line.key,
    maxPixels: limits.maxPixels ?? line.w * line.h,
    maxBytes: limits.maxBytes ?? DEFAULT_MAX_IMAGE_BYTES,
  });
  if (image.width !== line.w || image.height !== line.h) {
    throw new Error(
      `${line.key} is ${image.width}×${image.height} now, but its masks are ${line.w}×${line.h}: ` +
        'the image changed after stage 3',
    );
  }
  const size = releaseSize(image.width, image.height, shortestSide);
  let pipeline = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } });
  if (size.scale < 1) pipeline = pipeline.resize(size.width, size.height, { fit: 'fill' });
  const jpeg = await pipeline.jpeg({ quality: JPEG_QUALITY }).toBuffer();
  const key = runLayout.releaseImage(runId, line.id);
  await out.put(key, jpeg, { contentType: 'image/jpeg' });
  return { key, scale: size.scale };
}
