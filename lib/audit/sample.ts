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

/** The sample the audit looks at, and what the pass over the run's results counted. */
export interface AuditSample {
  /** The sampled images, in id order. */
  sample: DoneLine[];
  /** Images stage 3 segmented, and images it could not segment (never audited). */
  segmented: number;
  failed: number;
  /** Shards without a result manifest yet: their images are left out of the audit. */
  unfinishedShards: number;
  /** Segmented images the reference has human masks for: what the sample is drawn from. */
  candidates: number;
  /** The first few segmented images, for error messages. */
  examples: string[];
}

/**
 * Draws the seeded sample (see seededSample) in one pass over the shards' result manifests, one
 * shard at a time: memory holds one shard and the sample, never the run's list of images.
 * `isCandidate` says whether the reference has human masks for an image.
 */
export async function drawAuditSample(
  out: ObjectStore,
  runId: string,
  isCandidate: (line: DoneLine) => boolean,
  size: number,
  seed: number,
  /** Called after each shard, e.g. to heartbeat. */
  onShard?: (shard: number, shards: number) => void,
): Promise<AuditSample> {
  const plan = await readPlan(out, runId);
  if (!plan) {
    throw new AuditInputError(
      out.uri(runLayout.stage3Plan(runId)),
      `run ${runId} has no stage-3 plan: the audit compares the masks of a finished stage 3`,
    );
  }
  const lowest = new LowestRanks<DoneLine>(size, seed);
  const drawn: Omit<AuditSample, 'sample'> = {
    segmented: 0,
    failed: 0,
    unfinishedShards: 0,
    candidates: 0,
    examples: [],
  };
  for (let shard = 0; shard < plan.shardCount; shard++) {
    const lines = await readShardResult(out, runId, shard);
    if (!lines) {
      drawn.unfinishedShards += 1;
      continue;
    }
    for (const line of lines) {
      if (!isDone(line)) {
        drawn.failed += 1;
        continue;
      }
      drawn.segmented += 1;
      if (drawn.examples.length < 3) drawn.examples.push(line.key);
      if (!isCandidate(line)) continue;
      drawn.candidates += 1;
      lowest.add(line);
    }
    onShard?.(shard, plan.shardCount);
  }
  return { sample: lowest.result(), ...drawn };
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
  const lowest = new LowestRanks<T>(size, seed);
  for (const item of items) lowest.add(item);
  return lowest.result();
}

/** The `size` items of lowest rank (ties by id) seen so far, in at most 2 × size memory. */
class LowestRanks<T extends { id: number }> {
  private kept: Array<{ item: T; rank: number }> = [];

  constructor(
    private readonly size: number,
    private readonly seed: number,
  ) {
    if (!Number.isInteger(size) || size < 0)
      throw new RangeError(`sample size must be a whole number, got ${size}`);
  }

  add(item: T): void {
    this.kept.push({ item, rank: hash32(this.seed, item.id, AUDIT_SALT) });
    if (this.kept.length >= 2 * this.size + 1) this.trim();
  }

  result(): T[] {
    this.trim();
    return this.kept.map((r) => r.item).sort((a, b) => a.id - b.id);
  }

  private trim(): void {
    this.kept.sort((a, b) => a.rank - b.rank || a.item.id - b.item.id);
    this.kept.length = Math.min(this.kept.length, this.size);
  }
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
