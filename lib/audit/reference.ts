// The human masks the audit compares with (run config `audit.reference`), in one of two forms:
//
// - coco: a COCO instances JSON. Its images are matched to the run's by file name (the last path
//   segment of `file_name` against the last segment of the image URI). Segmentations may be
//   compressed or uncompressed RLE, or polygons (rasterised as pycocotools does, ./polygon.ts).
//   Crowd annotations (iscrowd = 1) mark groups, not objects, and are left out.
// - png: a folder of label images (PNG, BMP, ...) named like the photos with their own extension
//   ("gt/124080.bmp" for "images/124080.jpg"); 0 is background, each other value one object, and
//   `ignoreValue` a region left out of IoU (./labels.ts).
//
// Every problem is an AuditInputError naming the file at fault.
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
  /** The human masks of a run image that `find` matched; checks they have the image's size. */
  load(image: RunImage): Promise<HumanMasks>;
}

export async function openReference(stores: StoreCache, source: MaskSourceConfig): Promise<ReferenceSet> {
  if (source.format === 'coco') return CocoReference.open(stores, source.uri);
  return LabelImageReference.open(stores, source.uri, source.ignoreValue);
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
const cocoSchema = z.object({
  images: z.array(
    z.object({
      id: z.number().int(),
      file_name: z.string().min(1),
      width: z.number().int().positive(),
      height: z.number().int().positive(),
    }),
  ),
  annotations: z.array(
    z.object({
      id: z.number().int(),
      image_id: z.number().int(),
      segmentation: z.union([polygonsSchema, rleSchema]),
      iscrowd: z.union([z.literal(0), z.literal(1), z.boolean()]).optional(),
    }),
  ),
});
type CocoFile = z.infer<typeof cocoSchema>;
type CocoImage = CocoFile['images'][number];
type CocoAnnotation = CocoFile['annotations'][number];

class CocoReference implements ReferenceSet {
  readonly format = 'coco';

  private constructor(
    readonly uri: string,
    private readonly byName: Map<string, CocoImage>,
    private readonly annotations: Map<number, CocoAnnotation[]>,
  ) {}

  static async open(stores: StoreCache, uri: string): Promise<CocoReference> {
    const { store, key } = stores.locate(uri);
    const file = parseCoco(uri, await getReferenceFile(store, key, 'COCO instances JSON'));
    const byName = new Map<string, CocoImage>();
    for (const image of file.images) {
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
    }
    const annotations = new Map<number, CocoAnnotation[]>();
    for (const a of file.annotations)
      annotations.set(a.image_id, [...(annotations.get(a.image_id) ?? []), a]);
    return new CocoReference(uri, byName, annotations);
  }

  get imageCount(): number {
    return this.byName.size;
  }

  find(imageUri: string): string | undefined {
    const name = uriFileName(imageUri);
    return this.byName.has(name) ? name : undefined;
  }

  examples(count: number): string[] {
    return [...this.byName.keys()].slice(0, count);
  }

  async load(image: RunImage): Promise<HumanMasks> {
    const name = uriFileName(image.key);
    const entry = this.byName.get(name);
    if (!entry) throw new Error(`no reference image named "${name}" (call find first)`);
    if (entry.width !== image.w || entry.height !== image.h) {
      throw new AuditInputError(
        this.uri,
        `image ${entry.id} ("${entry.file_name}") is ${size(entry.width, entry.height)} in the reference, ` +
          `expected ${size(image.w, image.h)} like the run's image ${image.key}`,
      );
    }
    const result: HumanMasks = { file: this.uri, masks: [], ignore: null, skippedCrowd: 0, skippedEmpty: 0 };
    for (const annotation of this.annotations.get(entry.id) ?? []) {
      if (annotation.iscrowd === 1 || annotation.iscrowd === true) {
        result.skippedCrowd += 1;
        continue;
      }
      const rle = this.annotationRle(annotation, entry);
      const area = rleArea(rle);
      if (area === 0) result.skippedEmpty += 1;
      else result.masks.push({ rle, area, label: `annotation ${annotation.id}` });
    }
    return result;
  }

  private annotationRle(annotation: CocoAnnotation, image: CocoImage): Rle {
    const where = `annotation ${annotation.id} of image ${image.id} ("${image.file_name}")`;
    const { segmentation } = annotation;
    try {
      if (Array.isArray(segmentation)) return rleFromPolygons(segmentation, image.height, image.width);
      const [h, w] = segmentation.size;
      if (h !== image.height || w !== image.width) {
        throw new Error(
          `its RLE is ${size(w, h)}, expected ${size(image.width, image.height)} like its image`,
        );
      }
      if (typeof segmentation.counts === 'string')
        return decompressRle({ size: [h, w], counts: segmentation.counts });
      const rle: Rle = { size: [h, w], counts: segmentation.counts };
      checkRle(rle);
      return rle;
    } catch (err) {
      throw new AuditInputError(this.uri, `${where}: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function getReferenceFile(store: ObjectStore, key: string, what: string): Promise<Buffer> {
  try {
    return await store.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) {
      throw new AuditInputError(store.uri(key), `the audit reference (${what}) does not exist`, {
        cause: err,
      });
    }
    throw err;
  }
}

function parseCoco(uri: string, bytes: Buffer): CocoFile {
  if (bytes.length === 0) throw new AuditInputError(uri, 'the COCO instances JSON is empty (0 bytes)');
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new AuditInputError(uri, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = cocoSchema.safeParse(json);
  if (!parsed.success) {
    throw new AuditInputError(uri, `not a COCO instances file: ${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
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
  ): Promise<LabelImageReference> {
    const store = stores.open(uri);
    const byStem = new Map<string, string>();
    for await (const key of store.listKeys('')) {
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
    return [...this.byStem.values()].slice(0, count);
  }

  async load(image: RunImage): Promise<HumanMasks> {
    const key = this.find(image.key);
    if (!key) throw new Error(`no reference mask for ${image.key} (call find first)`);
    const file = this.store.uri(key);
    const rgb = await decodeMask(file, await this.store.get(key));
    if (rgb.width !== image.w || rgb.height !== image.h) {
      throw new AuditInputError(
        file,
        `the mask is ${size(rgb.width, rgb.height)}, expected ${size(image.w, image.h)} like the run's image ${image.key}`,
      );
    }
    const labels = splitLabels(rgb.data, rgb.height, rgb.width, this.ignoreValue);
    const masks = labels.objects.map(({ label, rle }) => ({
      rle,
      area: rleArea(rle),
      label: describeLabel(label),
    }));
    return { file, masks, ignore: labels.ignore, skippedCrowd: 0, skippedEmpty: 0 };
  }
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
