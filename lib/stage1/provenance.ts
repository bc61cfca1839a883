// Where a dataset's human masks came from. A closed round writes, per stage-3 shard, one line per
// image it annotated (runs/<run>/stage1/provenance/<shard>/round-<k>.jsonl); the dataset build
// reads its shard's files and puts them on the image's manifest line as `annotated`. Kept per
// shard so that building one shard reads only the lines of its own images, at any run size.
import { z } from 'zod';
import type { ObjectStore } from '../object-store.ts';
import { runLayout } from '../run-layout.ts';
import type { AnnotationRecord } from './annotations.ts';

/** One mask a person (or a simulated annotator) accepted, and how. */
export interface AnnotatedMask {
  stage: 'stage1';
  round: number;
  annotator: string;
  /** The model whose decoder assisted ("name@version"). */
  model: string;
  seconds: number;
  clicks: number;
  /** Key of the annotation record (its mask as COCO RLE), relative to the run's output store. */
  annotation: string;
}

const lineSchema = z.object({
  id: z.number().int().nonnegative(),
  annotated: z.array(
    z.object({
      stage: z.literal('stage1'),
      round: z.number().int().positive(),
      annotator: z.string(),
      model: z.string(),
      seconds: z.number().nonnegative(),
      clicks: z.number().int().nonnegative(),
      annotation: z.string().min(1),
    }),
  ),
});

/** The round's provenance files, one per shard its images fall in; rewritten whole on a retry. */
export async function writeRoundProvenance(
  out: ObjectStore,
  runId: string,
  round: number,
  records: readonly AnnotationRecord[],
  shardSize: number,
): Promise<void> {
  const byShard = new Map<number, Map<number, AnnotatedMask[]>>();
  for (const r of records) {
    const shard = Math.floor(r.imageId / shardSize);
    const images = byShard.get(shard) ?? byShard.set(shard, new Map()).get(shard)!;
    const masks = images.get(r.imageId) ?? images.set(r.imageId, []).get(r.imageId)!;
    masks.push({
      stage: 'stage1',
      round,
      annotator: r.annotator,
      model: r.model,
      seconds: r.seconds,
      clicks: r.clicks,
      annotation: runLayout.stage1Annotation(runId, round, r.imageId, r.submissionId),
    });
  }
  for (const [shard, images] of byShard) {
    const lines = [...images]
      .sort(([a], [b]) => a - b)
      .map(([id, annotated]) => JSON.stringify({ id, annotated }) + '\n');
    await out.put(runLayout.stage1Provenance(runId, shard, round), lines.join(''), {
      contentType: 'application/x-ndjson',
    });
  }
}

/** Every round's annotated masks of the shard's images, by image id, rounds in order. */
export async function readShardProvenance(
  out: ObjectStore,
  runId: string,
  shard: number,
): Promise<Map<number, AnnotatedMask[]>> {
  const files: { round: number; key: string }[] = [];
  for await (const key of out.listKeys(runLayout.stage1ProvenancePrefix(runId, shard))) {
    const round = /round-(\d+)\.jsonl$/.exec(key);
    if (round) files.push({ round: Number(round[1]), key });
  }
  const byImage = new Map<number, AnnotatedMask[]>();
  for (const { key } of files.sort((a, b) => a.round - b.round)) {
    const text = (await out.get(key)).toString('utf8');
    for (const [i, raw] of text.split('\n').entries()) {
      if (!raw.trim()) continue;
      const parsed = lineSchema.safeParse(parseJson(raw));
      if (!parsed.success)
        throw new Error(`${out.uri(key)} line ${i + 1} is not a provenance line: ${parsed.error.message}`);
      const masks = byImage.get(parsed.data.id) ?? byImage.set(parsed.data.id, []).get(parsed.data.id)!;
      masks.push(...parsed.data.annotated);
    }
  }
  return byImage;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // refused by the schema, with the file and line in the message
  }
}
