// Which images the audit looks at: the images stage 3 segmented, and a seeded random sample of
// those that have human masks.
//
// The sample ranks every candidate by a hash of (seed, image id) and keeps the lowest ranks. So
// the same seed always picks the same images, whatever order the candidates are listed in, and
// adding images to the run or the reference never swaps out an image that stays a candidate
// unless a newcomer outranks it.
import type { DoneLine } from '../dataset/masks-file.ts';
import type { ObjectStore } from '../object-store.ts';
import { runLayout } from '../run-layout.ts';
import { readPlan } from '../stage3/shard-plan.ts';
import { readShardResult } from '../stage3/shard-runner.ts';
import { hash32 } from '../synth/random.ts';
import { AuditInputError } from './errors.ts';

export type { DoneLine } from '../dataset/masks-file.ts';

export interface SegmentedImages {
  /** Images stage 3 segmented, in id order. */
  done: DoneLine[];
  /** Images stage 3 could not segment (never audited). */
  failed: number;
  /** Shards without a result manifest yet: their images are left out of the audit. */
  unfinishedShards: number;
}

/** Reads every shard's result manifest; needs the stage-3 plan to know how many there are. */
export async function listSegmentedImages(out: ObjectStore, runId: string): Promise<SegmentedImages> {
  const plan = await readPlan(out, runId);
  if (!plan) {
    throw new AuditInputError(
      out.uri(runLayout.stage3Plan(runId)),
      `run ${runId} has no stage-3 plan: the audit compares the masks of a finished stage 3`,
    );
  }
  const result: SegmentedImages = { done: [], failed: 0, unfinishedShards: 0 };
  for (let shard = 0; shard < plan.shardCount; shard++) {
    const lines = await readShardResult(out, runId, shard);
    if (!lines) {
      result.unfinishedShards += 1;
      continue;
    }
    for (const line of lines) {
      if (isDone(line)) result.done.push(line);
      else result.failed += 1;
    }
  }
  result.done.sort((a, b) => a.id - b.id);
  return result;
}

function isDone(line: { status: string; w?: number; h?: number; masks?: string }): line is DoneLine {
  return (
    line.status === 'done' &&
    typeof line.w === 'number' &&
    typeof line.h === 'number' &&
    typeof line.masks === 'string'
  );
}

/** Salt so the audit's ranks differ from other users of hash32 with the same seed. */
const AUDIT_SALT = 0x61756474; // "audt"

/**
 * Up to `size` items chosen at random but reproducibly from `seed`; returned in id order.
 * `id` must be unique per item (image ids are).
 */
export function seededSample<T extends { id: number }>(items: readonly T[], size: number, seed: number): T[] {
  if (!Number.isInteger(size) || size < 0)
    throw new RangeError(`sample size must be a whole number, got ${size}`);
  const ranked = items.map((item) => ({ item, rank: hash32(seed, item.id, AUDIT_SALT) }));
  ranked.sort((a, b) => a.rank - b.rank || a.item.id - b.item.id);
  return ranked
    .slice(0, size)
    .map((r) => r.item)
    .sort((a, b) => a.id - b.id);
}

/**
 * The file name of an object URI, which is what reference sets are matched by:
 * "s3://b/images/a.jpg" → "a.jpg". file:// URIs are percent-encoded ("my%20photo.jpg"), so their
 * name is decoded, as lib/object-store/uri.ts does; s3:// keys are used as they are.
 */
export function uriFileName(uri: string): string {
  const name = lastSegment(uri);
  if (!/^file:/i.test(uri)) return name;
  try {
    return decodeURIComponent(name);
  } catch {
    return name; // a stray "%" is not an escape
  }
}

/** The last segment of a key or path; COCO files written on Windows use backslashes. */
export function lastSegment(path: string): string {
  return path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
}

/** "a.b.jpg" → "a.b": PNG reference masks are named like the image, with their own extension. */
export function stem(fileName: string): string {
  const dot = fileName.lastIndexOf('.');
  return dot > 0 ? fileName.slice(0, dot) : fileName;
}
