// The engine report of one run: reads what the run stored (engine-report-data.ts), draws the
// gallery pictures, renders the page (engine-report-html.ts) and writes it to
// runs/<run>/report/index.html. Safe to run at any time: a running run gets a report of what it
// has so far, and writing it again replaces it.
import sharp from 'sharp';
import { GALLERY_WIDTH, outline, paint, sampleMask, shrinkPhoto, tint, type Rgb } from '../audit/overlay.ts';
import type { ObjectStore } from '../object-store.ts';
import { StoreCache } from '../object-store/uri.ts';
import { toRle, type CocoRle } from '../rle.ts';
import { runLayout } from '../run-layout.ts';
import {
  readEngineReportData,
  type EngineReportData,
  type EngineReportOptions,
  type GalleryImage,
} from './engine-report-data.ts';
import { engineReportSections, renderEngineReportHtml } from './engine-report-html.ts';

export { EngineReportError, readEngineReportData } from './engine-report-data.ts';
export type { EngineReportData, EngineReportOptions } from './engine-report-data.ts';

export interface EngineReportResult {
  key: string;
  /** Each section in page order, and whether the run had data for it. */
  sections: { name: string; filled: boolean }[];
}

/** Reads, renders and writes runs/<run>/report/index.html. */
export async function writeEngineReport(
  out: ObjectStore,
  runId: string,
  options: EngineReportOptions = {},
): Promise<EngineReportResult> {
  const stores = options.stores ?? new StoreCache();
  try {
    const data = await readEngineReportData(out, runId, { ...options, stores });
    const jpegs = await renderGallery(out, stores, data);
    const key = runLayout.engineReport(runId);
    await out.put(key, renderEngineReportHtml(data, jpegs), { contentType: 'text/html; charset=utf-8' });
    const sections = engineReportSections(data, jpegs).map(({ name, filled }) => ({ name, filled }));
    return { key, sections };
  } finally {
    if (!options.stores) await stores.close();
  }
}

/**
 * The gallery's pictures by GalleryImage.key. A photo that cannot be read leaves its picture out
 * (the page says so) rather than failing the report: the masks are the run's, the photo may not be.
 */
export async function renderGallery(
  out: ObjectStore,
  stores: StoreCache,
  data: Pick<EngineReportData, 'gallery'>,
): Promise<Map<string, Buffer>> {
  const jpegs = new Map<string, Buffer>();
  for (const image of data.gallery.images) {
    const photo = await readPhoto(out, stores, image).catch(() => undefined);
    if (photo) jpegs.set(image.key, await renderMasks(photo, image.name, image.masks));
  }
  return jpegs;
}

async function readPhoto(out: ObjectStore, stores: StoreCache, image: GalleryImage): Promise<Buffer> {
  if ('key' in image.photo) return out.get(image.photo.key);
  const { store, key } = stores.locate(image.photo.uri);
  return store.get(key);
}

/** Distinct, saturated colours, none of them the photo's likely greys; reused past the tenth mask. */
export const MASK_PALETTE: readonly Rgb[] = [
  [0, 190, 255],
  [255, 40, 120],
  [255, 200, 0],
  [60, 220, 60],
  [170, 80, 255],
  [255, 120, 0],
  [0, 230, 170],
  [255, 60, 40],
  [90, 120, 255],
  [220, 0, 220],
];
const FILL_ALPHA = 0.35;

/** The photo, downscaled to the gallery width, with every mask filled and outlined in its colour. */
export async function renderMasks(
  photoBytes: Uint8Array,
  name: string,
  masks: readonly CocoRle[],
  maxWidth = GALLERY_WIDTH,
): Promise<Buffer> {
  const { pixels, width, height } = await shrinkPhoto(photoBytes, name, maxWidth);
  const scaled = masks.map((m) => sampleMask(toRle(m), width, height));
  // Fills first, outlines last: an outline stays visible where a later mask's fill covers it.
  scaled.forEach((mask, i) => tint(pixels, mask, colourOf(i), FILL_ALPHA));
  scaled.forEach((mask, i) => paint(pixels, outline(mask, width, height), colourOf(i)));
  return (
    sharp(pixels, { raw: { width, height, channels: 3 } })
      // Full-resolution colour: 4:2:0 would wash the 2 px outlines out into their neighbours.
      .jpeg({ quality: 85, chromaSubsampling: '4:4:4' })
      .toBuffer()
  );
}

function colourOf(index: number): Rgb {
  return MASK_PALETTE[index % MASK_PALETTE.length]!;
}
