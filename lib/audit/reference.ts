// The human masks the audit compares with (run config `audit.reference`), in one of two forms:
//
// - coco: a COCO instances JSON. Its images are matched to the run's by file name (the last path
//   segment of `file_name` against the last segment of the image URI). Segmentations may be
//   compressed or uncompressed RLE, or polygons (rasterised as pycocotools does, ./polygon.ts).
//   Crowd annotations (iscrowd = 1) mark groups, not objects, and are left out. The file is read
//   as a stream, never whole: opening keeps its image list; `entries` reads it once more and keeps
//   only the annotations of the images asked for (the audit's sample).
// - png: a folder of label images (PNG, BMP, ...) named like the photos with their own extension
//   ("gt/124080.bmp" for "images/124080.jpg"); 0 is background, each other value one object, and
//   `ignoreValue` a region left out of IoU (./labels.ts).
//
// `entries` gives each sampled image a ReferenceEntry, small and self-contained, that is stored
// with the sample; `loadHumanMasks` turns one into masks without the reference set.
//
// Every problem is an AuditInputError naming the file at fault.
import { JSONParser } from '@streamparser/json';
import { z } from 'zod';
import { ImageDecodeError, loadImage } from '../images/image-io.ts';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import type { MaskSourceConfig } from '../run-config.ts';
import { checkRle, decompressRle, rleArea, type Rle } from '../rle.ts';
import { AuditInputError } from './errors.ts';
import { describeLabel, splitLabels } from './labels.ts';
import { rleFromPolygons } from './polygon.ts';
import { lastSegment, stem, uriFileName } from './sample.ts';

/** One human mask. */
export interface HumanMask {
  rle: Rle;
  area: number;
  /** How to find it again: "annotation 17" (COCO) or "value 255" (label images). */
  label: string;
}

/** The human masks of one image. */
export interface HumanMasks {
  /** URI of the file they came from (the COCO JSON or the label image). */
  file: string;
  masks: HumanMask[];
  /** Pixels to leave out of IoU (label images with an ignore value), or null. */
  ignore: Rle | null;
  /** Annotations left out: crowd regions, and masks with no pixel. */
  skippedCrowd: number;
  skippedEmpty: number;
}

/** The run image a reference entry is loaded for: its URI and size from the shard result. */
export interface RunImage {
  key: string;
  w: number;
  h: number;
}

export interface ReferenceSet {
  readonly uri: string;
  readonly format: MaskSourceConfig['format'];
  /** Number of images the reference has masks for. */
  readonly imageCount: number;
  /** The reference's name for a run image ("124080.bmp", "a.jpg"), or undefined when it has none. */
  find(imageUri: string): string | undefined;
  /** A few reference names, for error messages. */
  examples(count: number): string[];
  /** Every name `find` can return, in the reference's order. */
  names(): string[];
  /** The entries of run images that `find` matched, in their order (a COCO file is read once per call). */
  entries(images: readonly Pick<RunImage, 'key'>[]): Promise<ReferenceEntry[]>;
}

/** Where one image's human masks are: stored with the audit's sample, loaded by loadHumanMasks. */
export type ReferenceEntry =
  | { format: 'coco'; file: string; image: CocoImage; annotations: CocoAnnotation[] }
  | { format: 'png'; file: string; ignoreValue: number | null };

/**
 * `onRead` is called as the reference is read (bytes of a COCO file, keys of a folder so far), e.g.
 * to heartbeat: reading a large reference can take minutes.
 */
export async function openReference(
  stores: StoreCache,
  source: MaskSourceConfig,
  onRead: (count: number) => void = () => {},
): Promise<ReferenceSet> {
  if (source.format === 'coco') return CocoReference.open(stores, source.uri, onRead);
  return LabelImageReference.open(stores, source.uri, source.ignoreValue, onRead);
}

/** The human masks of a run image; checks they have the image's size. */
export async function loadHumanMasks(
  stores: StoreCache,
  entry: ReferenceEntry,
  image: RunImage,
): Promise<HumanMasks> {
  return entry.format === 'coco' ? cocoHumanMasks(entry, image) : labelImageHumanMasks(stores, entry, image);
}

/** "w×h" the way every size message writes it. */
function size(w: number, h: number): string {
  return `${w}×${h} (w×h)`;
}

// ---------------------------------------------------------------------------------------------
// COCO instances JSON
// ---------------------------------------------------------------------------------------------

const polygonsSchema = z.array(z.array(z.number()));
const rleSchema = z.object({
  size: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
  counts: z.union([z.string(), z.array(z.number().int().nonnegative())]),
});
const cocoImageSchema = z.object({
  id: z.number().int(),
  file_name: z.string().min(1),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
});
const cocoAnnotationSchema = z.object({
  id: z.number().int(),
  image_id: z.number().int(),
  segmentation: z.union([polygonsSchema, rleSchema]),
  iscrowd: z.union([z.literal(0), z.literal(1), z.boolean()]).optional(),
});
type CocoImage = z.infer<typeof cocoImageSchema>;
type CocoAnnotation = z.infer<typeof cocoAnnotationSchema>;

class CocoReference implements ReferenceSet {
  readonly format = 'coco';

  private constructor(
    readonly uri: string,
    private readonly stores: StoreCache,
    private readonly byName: Map<string, CocoImage>,
    private readonly onRead: (bytes: number) => void,
  ) {}

  static async open(
    stores: StoreCache,
    uri: string,
    onRead: (bytes: number) => void,
  ): Promise<CocoReference> {
    const byName = new Map<string, CocoImage>();
    await streamCoco(stores, uri, onRead, 'images', (value, index) => {
      const image = parseElement(uri, cocoImageSchema, value, `images[${index}]`);
      const name = lastSegment(image.file_name);
      const other = byName.get(name);
      if (other) {
        throw new AuditInputError(
          uri,
          `images ${other.id} ("${other.file_name}") and ${image.id} ("${image.file_name}") have the same ` +
            `file name "${name}"; the audit matches images by file name, so it cannot tell them apart`,
        );
      }
      byName.set(name, image);
    });
    return new CocoReference(uri, stores, byName, onRead);
  }

  get imageCount(): number {
    return this.byName.size;
  }

  find(imageUri: string): string | undefined {
    const name = uriFileName(imageUri);
    return this.byName.has(name) ? name : undefined;
  }

  examples(count: number): string[] {
    return this.names().slice(0, count);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  async entries(images: readonly Pick<RunImage, 'key'>[]): Promise<ReferenceEntry[]> {
    const wanted = new Map<number, CocoAnnotation[]>();
    const cocoImages = images.map((image) => {
      const name = uriFileName(image.key);
      const entry = this.byName.get(name);
      if (!entry) throw new Error(`no reference image named "${name}" (call find first)`);
      wanted.set(entry.id, []);
      return entry;
    });
    await streamCoco(this.stores, this.uri, this.onRead, 'annotations', (value, index) => {
      const imageId = (value as { image_id?: unknown } | null)?.image_id;
      if (typeof imageId !== 'number' || !wanted.has(imageId)) return;
      wanted.get(imageId)!.push(parseElement(this.uri, cocoAnnotationSchema, value, `annotations[${index}]`));
    });
    return cocoImages.map((image) => ({
      format: 'coco',
      file: this.uri,
      image,
      annotations: wanted.get(image.id)!,
    }));
  }
}

function cocoHumanMasks(entry: Extract<ReferenceEntry, { format: 'coco' }>, image: RunImage): HumanMasks {
  const { image: cocoImage, file } = entry;
  if (cocoImage.width !== image.w || cocoImage.height !== image.h) {
    throw new AuditInputError(
      file,
      `image ${cocoImage.id} ("${cocoImage.file_name}") is ${size(cocoImage.width, cocoImage.height)} in the reference, ` +
        `expected ${size(image.w, image.h)} like the run's image ${image.key}`,
    );
  }
  const result: HumanMasks = { file, masks: [], ignore: null, skippedCrowd: 0, skippedEmpty: 0 };
  for (const annotation of entry.annotations) {
    if (annotation.iscrowd === 1 || annotation.iscrowd === true) {
      result.skippedCrowd += 1;
      continue;
    }
    const rle = annotationRle(file, annotation, cocoImage);
    const area = rleArea(rle);
    if (area === 0) result.skippedEmpty += 1;
    else result.masks.push({ rle, area, label: `annotation ${annotation.id}` });
  }
  return result;
}

function annotationRle(file: string, annotation: CocoAnnotation, image: CocoImage): Rle {
  const where = `annotation ${annotation.id} of image ${image.id} ("${image.file_name}")`;
  const { segmentation } = annotation;
  try {
    if (Array.isArray(segmentation)) return rleFromPolygons(segmentation, image.height, image.width);
    const [h, w] = segmentation.size;
    if (h !== image.height || w !== image.width) {
      throw new Error(`its RLE is ${size(w, h)}, expected ${size(image.width, image.height)} like its image`);
    }
    if (typeof segmentation.counts === 'string')
      return decompressRle({ size: [h, w], counts: segmentation.counts });
    const rle: Rle = { size: [h, w], counts: segmentation.counts };
    checkRle(rle);
    return rle;
  } catch (err) {
    throw new AuditInputError(file, `${where}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Calls `onElement` for each element of the COCO file's top-level array `array` ("images" or
 * "annotations"), reading the file as a stream: memory holds one element, not the file.
 */
async function streamCoco(
  stores: StoreCache,
  uri: string,
  onRead: (bytes: number) => void,
  array: 'images' | 'annotations',
  onElement: (value: unknown, index: number) => void,
): Promise<void> {
  const { store, key } = stores.locate(uri);
  const parser = new JSONParser({ paths: [`$.${array}.*`], keepStack: false });
  let failure: unknown;
  parser.onValue = ({ value, key: index }) => {
    if (failure === undefined) {
      try {
        onElement(value, index as number);
      } catch (err) {
        failure = err;
      }
    }
  };
  // The parser throws on bad JSON; an element's own error is kept and thrown as it is.
  const feed = (write: () => void) => {
    try {
      write();
    } catch (err) {
      failure ??= new AuditInputError(uri, `not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  };
  let bytes = 0;
  for await (const chunk of await openReferenceStream(store, key, 'COCO instances JSON')) {
    bytes += (chunk as Buffer).length;
    onRead(bytes);
    if (!parser.isEnded) feed(() => parser.write(chunk as Buffer));
    if (failure !== undefined) throw failure;
  }
  if (bytes === 0) throw new AuditInputError(uri, 'the COCO instances JSON is empty (0 bytes)');
  if (!parser.isEnded) feed(() => parser.end());
  if (failure !== undefined) throw failure;
}

function parseElement<T>(uri: string, schema: z.ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new AuditInputError(uri, `not a COCO instances file: ${where}: ${z.prettifyError(parsed.error)}`);
}

async function openReferenceStream(
  store: ObjectStore,
  key: string,
  what: string,
): Promise<AsyncIterable<unknown>> {
  try {
    return await store.getStream(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new AuditInputError(store.uri(key), `the audit reference (${what}) does not exist`, {
        cause: err,
      });
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// A folder of label images
// ---------------------------------------------------------------------------------------------

/** Lossless formats a mask can be stored in; a JPEG next to the masks is a photo, not a mask. */
const MASK_EXTENSIONS = new Set(['png', 'bmp', 'tif', 'tiff', 'gif', 'webp']);

class LabelImageReference implements ReferenceSet {
  readonly format = 'png';

  private constructor(
    readonly uri: string,
    private readonly store: ObjectStore,
    /** Image stem ("124080") → key of its mask ("124080.bmp"). */
    private readonly byStem: Map<string, string>,
    private readonly ignoreValue: number | null,
  ) {}

  static async open(
    stores: StoreCache,
    uri: string,
    ignoreValue: number | null,
    onRead: (keys: number) => void,
  ): Promise<LabelImageReference> {
    const store = stores.open(uri);
    const byStem = new Map<string, string>();
    let keys = 0;
    for await (const key of store.listKeys('')) {
      onRead(++keys);
      const name = lastSegment(key);
      const extension = name.slice(name.lastIndexOf('.') + 1).toLowerCase();
      if (!name.includes('.') || !MASK_EXTENSIONS.has(extension)) continue;
      const other = byStem.get(stem(name));
      if (other) {
        throw new AuditInputError(
          store.uri(''),
          `"${other}" and "${key}" are both masks for images named "${stem(name)}"; keep one`,
        );
      }
      byStem.set(stem(name), key);
    }
    return new LabelImageReference(store.uri(''), store, byStem, ignoreValue);
  }

  get imageCount(): number {
    return this.byStem.size;
  }

  find(imageUri: string): string | undefined {
    return this.byStem.get(stem(uriFileName(imageUri)));
  }

  examples(count: number): string[] {
    return this.names().slice(0, count);
  }

  names(): string[] {
    return [...this.byStem.values()];
  }

  async entries(images: readonly Pick<RunImage, 'key'>[]): Promise<ReferenceEntry[]> {
    return images.map((image) => {
      const key = this.find(image.key);
      if (!key) throw new Error(`no reference mask for ${image.key} (call find first)`);
      return { format: 'png', file: this.store.uri(key), ignoreValue: this.ignoreValue };
    });
  }
}

async function labelImageHumanMasks(
  stores: StoreCache,
  entry: Extract<ReferenceEntry, { format: 'png' }>,
  image: RunImage,
): Promise<HumanMasks> {
  const { file } = entry;
  const { store, key } = stores.locate(file);
  const rgb = await decodeMask(file, await store.get(key));
  if (rgb.width !== image.w || rgb.height !== image.h) {
    throw new AuditInputError(
      file,
      `the mask is ${size(rgb.width, rgb.height)}, expected ${size(image.w, image.h)} like the run's image ${image.key}`,
    );
  }
  const labels = splitLabels(rgb.data, rgb.height, rgb.width, entry.ignoreValue);
  const masks = labels.objects.map(({ label, rle }) => ({
    rle,
    area: rleArea(rle),
    label: describeLabel(label),
  }));
  return { file, masks, ignore: labels.ignore, skippedCrowd: 0, skippedEmpty: 0 };
}

/** Decodes a label image; empty, corrupt and unsupported files become AuditInputErrors. */
async function decodeMask(
  file: string,
  bytes: Buffer,
): Promise<{ data: Uint8Array; width: number; height: number }> {
  try {
    return await loadImage(bytes, { name: file });
  } catch (err) {
    if (!(err instanceof ImageDecodeError)) throw err;
    // The decoder's message already starts with the file name; keep only its reason.
    const reason = err.message.startsWith(`${file}: `) ? err.message.slice(file.length + 2) : err.message;
    throw new AuditInputError(file, `cannot read the reference mask: ${reason}`, { cause: err });
  }
}
