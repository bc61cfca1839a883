// The automatic masks of one image: its SA-1B per-image JSON (sam-spec §4), written by stage 3.
// Only the segmentations are read; each must have the image's size.
import { z } from 'zod';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import { decompressRle, type Rle } from '../rle.ts';
import { AuditInputError } from './errors.ts';
import type { DoneLine } from './sample.ts';

const sa1bSchema = z.object({
  annotations: z.array(
    z.object({
      segmentation: z.object({
        size: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
        counts: z.string(),
      }),
    }),
  ),
});

/** The RLEs of an image's automatic masks, in file order. */
export async function readAutomaticMasks(out: ObjectStore, line: DoneLine): Promise<Rle[]> {
  const uri = out.uri(line.masks);
  const file = parseSa1b(uri, await getMasks(out, line));
  return file.annotations.map(({ segmentation }, i) => {
    const [h, w] = segmentation.size;
    if (h !== line.h || w !== line.w) {
      throw new AuditInputError(
        uri,
        `annotation ${i} is ${w}×${h} (w×h), expected ${line.w}×${line.h} like the image ${line.key}`,
      );
    }
    try {
      return decompressRle({ size: [h, w], counts: segmentation.counts });
    } catch (err) {
      throw new AuditInputError(uri, `annotation ${i} has a bad RLE: ${(err as Error).message}`, {
        cause: err,
      });
    }
  });
}

async function getMasks(out: ObjectStore, line: DoneLine): Promise<Buffer> {
  try {
    return await out.get(line.masks);
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
    throw new AuditInputError(
      out.uri(line.masks),
      `the masks of image ${line.id} (${line.key}) are missing, though its shard result says it was segmented`,
      { cause: err },
    );
  }
}

function parseSa1b(uri: string, bytes: Buffer): z.infer<typeof sa1bSchema> {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new AuditInputError(uri, `not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = sa1bSchema.safeParse(json);
  if (!parsed.success)
    throw new AuditInputError(uri, `not an SA-1B image file: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}
