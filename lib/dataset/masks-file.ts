// Reads one image's SA-1B JSON (sam-spec §4) and boils it down to what the statistics need: the
// area and centroid sums of each mask. The parsed file is dropped as soon as this returns, so only
// the few images in flight are ever in memory, never the whole run's masks.
import { z } from 'zod';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import { decompressRle } from '../rle.ts';
import type { ShardResultLine } from '../stage3/shard-runner.ts';
import { maskMoments, type MaskMoments } from './mask-moments.ts';

/** Only the fields used here are checked; the rest of each annotation is left alone. */
const sa1bFileSchema = z.object({
  image: z.object({
    image_id: z.number().int(),
    width: z.number().int().positive(),
    height: z.number().int().positive(),
  }),
  annotations: z.array(
    z.object({
      segmentation: z.object({
        size: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
        counts: z.string(),
      }),
    }),
  ),
});

/** A result line of an image stage 3 segmented: its size and masks key are always there. */
export type DoneLine = ShardResultLine & { status: 'done'; w: number; h: number; masks: string };

export class MasksFileError extends Error {
  constructor(uri: string, problem: string, options?: { cause?: unknown }) {
    super(`${uri}: ${problem}`, options);
    this.name = 'MasksFileError';
  }
}

/** The moments of every mask of one image, checked against what the result line says. */
export async function readMaskMoments(out: ObjectStore, line: DoneLine): Promise<MaskMoments[]> {
  const uri = out.uri(line.masks);
  const file = parseMasksFile(uri, await getMasksFile(out, line));
  checkAgainstLine(uri, file, line);
  return file.annotations.map((annotation, i) => {
    const { size, counts } = annotation.segmentation;
    if (size[0] !== line.h || size[1] !== line.w) {
      throw new MasksFileError(
        uri,
        `annotation ${i} is ${size[0]}×${size[1]} (h×w), the image ${line.h}×${line.w}`,
      );
    }
    try {
      return maskMoments(decompressRle({ size, counts }));
    } catch (err) {
      throw new MasksFileError(uri, `annotation ${i} has a bad RLE: ${(err as Error).message}`, {
        cause: err,
      });
    }
  });
}

/** A result line pointing at a masks file that is not there means a broken run: say which. */
async function getMasksFile(out: ObjectStore, line: DoneLine): Promise<Buffer> {
  try {
    return await out.get(line.masks);
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
    throw new MasksFileError(
      out.uri(line.masks),
      `masks file "${line.masks}" of image ${line.id} (${line.key}) is missing, ` +
        'though its shard result says it was segmented',
      { cause: err },
    );
  }
}

function parseMasksFile(uri: string, bytes: Buffer): z.infer<typeof sa1bFileSchema> {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new MasksFileError(uri, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = sa1bFileSchema.safeParse(json);
  if (!parsed.success) {
    throw new MasksFileError(uri, `not an SA-1B image file: ${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}

function checkAgainstLine(uri: string, file: z.infer<typeof sa1bFileSchema>, line: DoneLine): void {
  const { image_id, width, height } = file.image;
  if (image_id !== line.id)
    throw new MasksFileError(uri, `image_id is ${image_id}, the result line says ${line.id}`);
  if (width !== line.w || height !== line.h) {
    throw new MasksFileError(uri, `image is ${width}×${height}, the result line says ${line.w}×${line.h}`);
  }
  if (file.annotations.length !== line.count) {
    throw new MasksFileError(
      uri,
      `${file.annotations.length} annotations, the result line says ${line.count}`,
    );
  }
}
