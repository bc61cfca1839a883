// The dry run of a shard: read every image's header (not its pixels) and record what a real run
// would meet: format, size, unreadable files. Writes runs/<run>/stage3/shards/<n>.probe.jsonl and
// returns counts plus the work a real run would do (encoder runs, decoder prompts).
import type { Readable } from 'node:stream';
import { generateCropBoxes } from '../amg/crop-boxes.ts';
import { readImageHeader } from '../images/image-io.ts';
import type { ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { runLayout } from '../run-layout.ts';
import { readShardEntries, type ShardEntry } from './shard-plan.ts';

/** JPEG EXIF blocks are at most 64 KiB, so the size is almost always within the first 256 KiB. */
const HEADER_BYTES = 256 * 1024;

export interface ProbeSettings {
  pointsPerSide: number;
  cropNLayers: number;
  cropOverlapRatio: number;
  cropNPointsDownscaleFactor: number;
  maxImagePixels: number;
}

export interface ProbeLine {
  key: string;
  id: number;
  status: 'readable' | 'unreadable';
  format?: string;
  w?: number;
  h?: number;
  error?: string;
}

export interface ProbeCounts {
  images: number;
  readable: number;
  unreadable: number;
  megapixels: number;
  /** Encoder runs (one per crop) and decoder prompts a real run would make. */
  encoderRuns: number;
  prompts: number;
}

export async function probeShard(
  out: ObjectStore,
  stores: StoreCache,
  opts: { runId: string; shard: number; settings: ProbeSettings; onImage?: (done: number) => void },
): Promise<ProbeCounts> {
  const entries = await readShardEntries(out, opts.runId, opts.shard);
  const lines: ProbeLine[] = [];
  const counts: ProbeCounts = {
    images: entries.length,
    readable: 0,
    unreadable: 0,
    megapixels: 0,
    encoderRuns: 0,
    prompts: 0,
  };
  for (const entry of entries) {
    const line = await probeImage(stores, entry, opts.settings.maxImagePixels);
    lines.push(line);
    if (line.status === 'readable') {
      counts.readable += 1;
      counts.megapixels += (line.w! * line.h!) / 1e6;
      const work = amgWork(line.h!, line.w!, opts.settings);
      counts.encoderRuns += work.encoderRuns;
      counts.prompts += work.prompts;
    } else counts.unreadable += 1;
    opts.onImage?.(lines.length);
  }
  await out.put(
    runLayout.shardProbe(opts.runId, opts.shard),
    lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
  );
  return counts;
}

async function probeImage(stores: StoreCache, entry: ShardEntry, maxPixels: number): Promise<ProbeLine> {
  const base = { key: entry.uri, id: entry.id };
  try {
    const { store, key } = stores.locate(entry.uri);
    const name = entry.uri.slice(entry.uri.lastIndexOf('/') + 1);
    const head = await readPrefix(await store.getStream(key), HEADER_BYTES);
    const header = await readImageHeader(head, { name }).catch(async (err) => {
      // A header past the first bytes (rare: huge EXIF or metadata first): read the whole file.
      if (head.length < HEADER_BYTES) throw err;
      return readImageHeader(await store.get(key), { name });
    });
    if (header.storedWidth * header.storedHeight > maxPixels) {
      throw new Error(
        `${name} is ${header.storedWidth}×${header.storedHeight}, over the ${maxPixels}-pixel limit`,
      );
    }
    return { ...base, status: 'readable', format: header.format, w: header.width, h: header.height };
  } catch (err) {
    if ((err as { retryable?: boolean }).retryable === true) throw err; // storage trouble: retry the activity
    return {
      ...base,
      status: 'unreadable',
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    };
  }
}

/** The first `limit` bytes of a stream (fewer if it is shorter); the rest is never downloaded. */
async function readPrefix(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer);
    length += (chunk as Buffer).length;
    if (length >= limit) break;
  }
  stream.destroy();
  return Buffer.concat(chunks).subarray(0, limit);
}

/** Crops and prompts of the AMG on an image of h × w (sam-spec §3 steps 1–2). */
export function amgWork(h: number, w: number, s: ProbeSettings): { encoderRuns: number; prompts: number } {
  const { layerIdxs } = generateCropBoxes(h, w, s.cropNLayers, s.cropOverlapRatio);
  let prompts = 0;
  for (const layer of layerIdxs)
    prompts += Math.trunc(s.pointsPerSide / s.cropNPointsDownscaleFactor ** layer) ** 2;
  return { encoderRuns: layerIdxs.length, prompts };
}
