// Builds a "finished stage-3 run" for the audit tests without a model: photos, human masks (label
// images and a COCO file) and automatic masks made from the human ones with controlled changes
// (shifted, dilated, eroded, dropped), so every IoU the audit should find is known in advance.
//
// Objects are axis-aligned rectangles, which keeps the expected IoUs easy to state in a test
// (a 20 px wide box shifted by 2 px: 18/22). `expectedBestIous` recomputes them independently,
// by counting pixels of plain arrays, without lib/rle.ts.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { FileObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';
import type { AuditConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { ShardResultLine } from '../../lib/stage3/shard-runner.ts';

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export type Perturbation =
  | { kind: 'same' }
  | { kind: 'shift'; dx: number; dy?: number }
  | { kind: 'dilate'; k: number }
  | { kind: 'erode'; k: number }
  | { kind: 'missing' };

export interface FixtureObject {
  rect: Rect;
  /** How the automatic mask differs from the human one. */
  auto: Perturbation;
}

export interface FixtureImage {
  /** Photo file name, e.g. "img-001.jpg"; its label image is "gt/img-001.png". */
  name: string;
  w: number;
  h: number;
  objects: FixtureObject[];
  /** Automatic masks of things no human drew (false positives for precision). */
  extraAuto?: Rect[];
  /** GrabCut-style unlabelled band of this half-width around each object's edge (label 128). */
  ignoreBand?: number;
  /** Stage 3 failed on this image. */
  failed?: boolean;
  /** The reference has no masks for this image. */
  noReference?: boolean;
}

export interface AuditFixture {
  root: string;
  runId: string;
  out: ObjectStore;
  stores: StoreCache;
  imagesDir: string;
  gtDir: string;
  gtUri: string;
  cocoPath: string;
  cocoUri: string;
  /** Audit settings for the label-image reference; spread and override as needed. */
  pngAudit: AuditConfig;
  cocoAudit: AuditConfig;
  cleanup(): Promise<void>;
}

export interface FixtureOptions {
  runId?: string;
  shardSize?: number;
  /** Write the COCO segmentations as polygons instead of RLE. */
  cocoPolygons?: boolean;
  /** Use this store for the run's outputs (e.g. S3) instead of a file:// folder. */
  out?: ObjectStore;
  stores?: StoreCache;
}

export const IGNORE_VALUE = 128;

export async function buildAuditFixture(
  images: FixtureImage[],
  options: FixtureOptions = {},
): Promise<AuditFixture> {
  const root = await mkdtemp(path.join(tmpdir(), 'sae-audit-'));
  const runId = options.runId ?? 'audit-run';
  const imagesDir = path.join(root, 'images');
  const gtDir = path.join(root, 'gt');
  await mkdir(imagesDir, { recursive: true });
  await mkdir(gtDir, { recursive: true });
  const out = options.out ?? new FileObjectStore(path.join(root, 'out'));
  const stores = options.stores ?? new StoreCache();

  for (const image of images) {
    await writeFile(path.join(imagesDir, image.name), await photo(image));
    if (!image.noReference)
      await writeFile(path.join(gtDir, `${stem(image.name)}.png`), await labelPng(image));
  }
  const cocoPath = path.join(root, 'coco.json');
  await writeFile(cocoPath, JSON.stringify(cocoFile(images, options.cocoPolygons ?? false)));
  await writeStage3(out, runId, images, imagesDir, options.shardSize ?? 3);

  const gtUri = pathToFileURL(gtDir).href + '/';
  const cocoUri = pathToFileURL(cocoPath).href;
  const base: Omit<AuditConfig, 'reference'> = {
    enabled: true,
    sampleSize: 500,
    seed: 0,
    gate: { minShareAbove090: null, minShareAbove075: null, minMeanIou: null },
  };
  return {
    root,
    runId,
    out,
    stores,
    imagesDir,
    gtDir,
    gtUri,
    cocoPath,
    cocoUri,
    pngAudit: { ...base, reference: { uri: gtUri, format: 'png', ignoreValue: IGNORE_VALUE } },
    cocoAudit: { ...base, reference: { uri: cocoUri, format: 'coco', ignoreValue: null } },
    cleanup: async () => {
      if (!options.stores) await stores.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Masks as plain row-major 0/1 arrays
// ---------------------------------------------------------------------------------------------

export function clip(rect: Rect, w: number, h: number): Rect {
  const x0 = Math.max(0, rect.x);
  const y0 = Math.max(0, rect.y);
  const x1 = Math.min(w, rect.x + rect.w);
  const y1 = Math.min(h, rect.y + rect.h);
  return { x: x0, y: y0, w: Math.max(0, x1 - x0), h: Math.max(0, y1 - y0) };
}

export function rectMask(rect: Rect, w: number, h: number): Uint8Array {
  const mask = new Uint8Array(w * h);
  const r = clip(rect, w, h);
  for (let y = r.y; y < r.y + r.h; y++) mask.fill(1, y * w + r.x, y * w + r.x + r.w);
  return mask;
}

/** The automatic mask's rectangle, or null when the automatic mask is missing. */
export function perturbed(rect: Rect, p: Perturbation): Rect | null {
  switch (p.kind) {
    case 'same':
      return rect;
    case 'shift':
      return { ...rect, x: rect.x + p.dx, y: rect.y + (p.dy ?? 0) };
    case 'dilate':
      return { x: rect.x - p.k, y: rect.y - p.k, w: rect.w + 2 * p.k, h: rect.h + 2 * p.k };
    case 'erode':
      return { x: rect.x + p.k, y: rect.y + p.k, w: rect.w - 2 * p.k, h: rect.h - 2 * p.k };
    case 'missing':
      return null;
  }
}

/** The human mask: the rectangle, less the ignore band's inner half. */
export function humanRect(image: FixtureImage, object: FixtureObject): Rect {
  const b = image.ignoreBand ?? 0;
  return perturbed(object.rect, { kind: 'erode', k: b })!;
}

/** 0 background, one value per object (255, 235, 215, ...), 128 for the ignore band. */
export function labelImage(image: FixtureImage): Uint8Array {
  const { w, h } = image;
  const labels = new Uint8Array(w * h);
  const b = image.ignoreBand ?? 0;
  image.objects.forEach((object, i) => {
    if (b > 0) paint(labels, rectMask(perturbed(object.rect, { kind: 'dilate', k: b })!, w, h), IGNORE_VALUE);
    paint(labels, rectMask(humanRect(image, object), w, h), objectValue(i));
  });
  return labels;
}

export function objectValue(index: number): number {
  return 255 - 20 * index;
}

function paint(labels: Uint8Array, mask: Uint8Array, value: number): void {
  for (let i = 0; i < mask.length; i++) if (mask[i]) labels[i] = value;
}

/** Every automatic mask of an image: the perturbed objects (missing ones left out), then the extras. */
export function automaticMasks(image: FixtureImage): Uint8Array[] {
  const rects = image.objects.map((o) => perturbed(o.rect, o.auto)).filter((r): r is Rect => r !== null);
  return [...rects, ...(image.extraAuto ?? [])].map((r) => rectMask(r, image.w, image.h));
}

/**
 * The best IoU of each human mask, by counting pixels (the ignore band removed from the
 * automatic masks): the independent answer the audit must reproduce.
 */
export function expectedBestIous(image: FixtureImage): number[] {
  const labels = labelImage(image);
  const autos = automaticMasks(image);
  return image.objects.map((_, i) => {
    const human = labels.map((v) => (v === objectValue(i) ? 1 : 0));
    return Math.max(0, ...autos.map((auto) => pixelIou(human, auto, labels)));
  });
}

function pixelIou(human: Uint8Array, auto: Uint8Array, labels: Uint8Array): number {
  let intersection = 0;
  let union = 0;
  for (let i = 0; i < human.length; i++) {
    const a = auto[i] && labels[i] !== IGNORE_VALUE;
    if (a && human[i]) intersection++;
    if (a || human[i]) union++;
  }
  return union === 0 ? 0 : intersection / union;
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

function stem(name: string): string {
  return name.slice(0, name.lastIndexOf('.'));
}

const OBJECT_COLOURS = [
  [200, 70, 40],
  [40, 60, 150],
  [225, 185, 60],
  [110, 110, 110],
];

/** A gradient photo with each object filled in its own colour, so the gallery has something to show. */
async function photo(image: FixtureImage): Promise<Buffer> {
  const { w, h } = image;
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      rgb[i] = 60 + Math.round((120 * x) / w);
      rgb[i + 1] = 90 + Math.round((100 * y) / h);
      rgb[i + 2] = 150;
    }
  }
  image.objects.forEach((object, k) => {
    // Neither green nor magenta: those are the overlay colours.
    const colour = OBJECT_COLOURS[k % OBJECT_COLOURS.length]!;
    const mask = rectMask(object.rect, w, h);
    for (let p = 0; p < mask.length; p++) if (mask[p]) rgb.set(colour, p * 3);
  });
  const encoder = sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
  return image.name.toLowerCase().endsWith('.png')
    ? encoder.png().toBuffer()
    : encoder.jpeg({ quality: 90 }).toBuffer();
}

async function labelPng(image: FixtureImage): Promise<Buffer> {
  return sharp(labelImage(image), { raw: { width: image.w, height: image.h, channels: 1 } })
    .png()
    .toBuffer();
}

function cocoFile(images: FixtureImage[], polygons: boolean) {
  let annotationId = 1;
  const withReference = images.filter((image) => !image.noReference);
  return {
    info: { description: 'audit test fixture' },
    images: withReference.map((image, i) => ({
      id: 100 + i,
      file_name: `photos/${image.name}`,
      width: image.w,
      height: image.h,
    })),
    annotations: withReference.flatMap((image, i) =>
      image.objects.map((object) => {
        const r = humanRect(image, object);
        const segmentation = polygons
          ? [[r.x, r.y, r.x + r.w, r.y, r.x + r.w, r.y + r.h, r.x, r.y + r.h]]
          : compressRle(encodeMask(rectMask(r, image.w, image.h), image.h, image.w));
        return {
          id: annotationId++,
          image_id: 100 + i,
          category_id: 1,
          segmentation,
          iscrowd: 0,
          area: r.w * r.h,
          bbox: [r.x, r.y, r.w, r.h],
        };
      }),
    ),
    categories: [{ id: 1, name: 'object' }],
  };
}

/** What stage 3 made of one image, for `writeFinishedStage3`. */
export interface Stage3Image {
  uri: string;
  w: number;
  h: number;
  /** Row-major 0/1 masks; left out when stage 3 failed on the image. */
  autos: Uint8Array[] | null;
}

async function writeStage3(
  out: ObjectStore,
  runId: string,
  images: FixtureImage[],
  imagesDir: string,
  shardSize: number,
) {
  const entries = images.map((image) => ({
    uri: pathToFileURL(path.join(imagesDir, image.name)).href,
    w: image.w,
    h: image.h,
    autos: image.failed ? null : automaticMasks(image),
  }));
  await writeFinishedStage3(out, runId, entries, shardSize);
}

/** The layout of a finished stage 3: plan, shard manifests and results, one SA-1B file per image. */
export async function writeFinishedStage3(
  out: ObjectStore,
  runId: string,
  images: Stage3Image[],
  shardSize: number,
) {
  const shardCount = Math.ceil(images.length / shardSize);
  for (let shard = 0; shard < shardCount; shard++) {
    const inputs: string[] = [];
    const results: ShardResultLine[] = [];
    for (let id = shard * shardSize; id < Math.min(images.length, (shard + 1) * shardSize); id++) {
      const image = images[id]!;
      inputs.push(JSON.stringify({ id, uri: image.uri }));
      results.push(await stage3Result(out, runId, id, image));
    }
    await out.put(runLayout.shardInput(runId, shard), inputs.join('\n') + '\n');
    await out.put(
      runLayout.shardResult(runId, shard),
      results.map((r) => JSON.stringify(r)).join('\n') + '\n',
    );
  }
  await out.put(
    runLayout.stage3Plan(runId),
    JSON.stringify({ shardCount, imageCount: images.length, shardSize }),
  );
}

async function stage3Result(
  out: ObjectStore,
  runId: string,
  id: number,
  image: Stage3Image,
): Promise<ShardResultLine> {
  const base = { key: image.uri, id, model: 'fixture', ms: 1 };
  if (!image.autos) return { ...base, status: 'failed', error: 'CorruptImageError: fixture', count: 0 };
  const annotations = image.autos.map((mask, i) => {
    const rle = encodeMask(mask, image.h, image.w);
    return {
      id: i,
      segmentation: compressRle(rle),
      bbox: [0, 0, 0, 0],
      area: mask.reduce((s, v) => s + v, 0),
      predicted_iou: 0.95,
      point_coords: [[0, 0]],
      crop_box: [0, 0, image.w, image.h],
      stability_score: 0.97,
    };
  });
  const fileName = image.uri.slice(image.uri.lastIndexOf('/') + 1);
  const sa1b = { image: { image_id: id, width: image.w, height: image.h, file_name: fileName }, annotations };
  const masks = runLayout.masks(runId, id);
  await out.put(masks, JSON.stringify(sa1b));
  return { ...base, w: image.w, h: image.h, status: 'done', masks, count: annotations.length };
}

/** Every key and its bytes, for "the audit changed nothing outside audit/" checks. */
export async function snapshot(store: ObjectStore, exceptPrefix: string): Promise<Map<string, string>> {
  const result = new Map<string, string>();
  for await (const key of store.listKeys('')) {
    if (!key.startsWith(exceptPrefix)) result.set(key, (await store.get(key)).toString('base64'));
  }
  return result;
}
