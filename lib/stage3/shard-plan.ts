// Cuts a run's images into shard manifests: runs/<run>/stage3/shards/<n>.input.jsonl, one line per
// image {"id", "uri"}. Image ids are ordinals in the source's stable order, so a rerun of the same
// run over the same images gives every image the same id. The plan is written last: once it
// exists, the manifests are complete and a retried planning step reuses them. The plan records
// what the manifests were cut from (the image source and the shard size): a plan from other inputs
// (an old run under the same id, or a dry run of another config) is refused, never reused.
import { z } from 'zod';
import { fingerprintOf, inputDifferences } from '../fingerprint.ts';
import type { ObjectStore } from '../object-store.ts';
import { imageUris, type ImageSource, type SourcePosition } from '../images/image-source.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { runLayout } from '../run-layout.ts';

export interface ShardPlan {
  shardCount: number;
  imageCount: number;
  shardSize: number;
}

/** What the shard manifests depend on. */
export interface PlanInputs extends Record<string, unknown> {
  images: ImageSource;
  shardSize: number;
}

/** plan.json holds its inputs too, so that a later run can tell whether the plan fits it. */
interface StoredPlan extends ShardPlan {
  fingerprint?: string;
  inputs?: Record<string, unknown>;
}

/** A plan exists for this run id and output, made from other inputs. */
export class PlanMismatchError extends Error {
  constructor(where: string, ...differences: string[]) {
    super(
      `${where} was planned from other inputs (${differences.join('; ')}), so its shard manifests ` +
        "do not fit this run. Give the run a new id, or delete that run's folder to plan it afresh.",
    );
    this.name = 'PlanMismatchError';
  }
}

export interface ShardEntry {
  id: number;
  uri: string;
}

const planSchema = z.object({
  shardCount: z.number().int(),
  imageCount: z.number().int(),
  shardSize: z.number().int(),
  fingerprint: z.string().optional(),
  inputs: z.record(z.string(), z.unknown()).optional(),
});
const entrySchema = z.object({ id: z.number().int().nonnegative(), uri: z.string().min(1) });

/** How far an interrupted planning got: shards written, and the source position after the last. */
export interface PlanCursor {
  shardCount: number;
  imageCount: number;
  position?: SourcePosition;
}

export interface PlanOptions {
  runId: string;
  source: ImageSource;
  shardSize: number;
  /** Where an earlier attempt stopped (its last heartbeat): its shard manifests are kept. */
  resume?: PlanCursor;
  /** Called with the cursor after every shard written: heartbeat it. */
  onShard?: (cursor: PlanCursor) => void;
}

export async function planShards(
  out: ObjectStore,
  stores: StoreCache,
  opts: PlanOptions,
): Promise<ShardPlan> {
  const { fingerprint, inputs } = fingerprintOf<PlanInputs>({
    images: opts.source,
    shardSize: opts.shardSize,
  });
  const existing = await readStoredPlan(out, opts.runId);
  if (existing) {
    if (existing.fingerprint !== fingerprint) {
      const differences = existing.inputs
        ? inputDifferences(existing.inputs, inputs)
        : ['made by an older sa-engine that did not record its inputs'];
      throw new PlanMismatchError(out.uri(runLayout.stage3Plan(opts.runId)), ...differences);
    }
    return planOf(existing);
  }

  // Memory stays one shard's lines, whatever the number of images.
  const cursor: PlanCursor = resumeAt(opts.resume);
  let lines: string[] = [];
  let position: SourcePosition | undefined;
  const flush = async () => {
    await out.put(runLayout.shardInput(opts.runId, cursor.shardCount), lines.join('\n') + '\n');
    cursor.shardCount += 1;
    cursor.position = position;
    lines = [];
    opts.onShard?.({ ...cursor });
  };
  for await (const image of imageUris(opts.source, stores, cursor.position)) {
    lines.push(JSON.stringify({ id: cursor.imageCount, uri: image.uri } satisfies ShardEntry));
    cursor.imageCount += 1;
    position = image.position;
    if (lines.length === opts.shardSize) await flush();
  }
  if (lines.length > 0) await flush();
  const plan: ShardPlan = {
    shardCount: cursor.shardCount,
    imageCount: cursor.imageCount,
    shardSize: opts.shardSize,
  };
  const stored: StoredPlan = { ...plan, fingerprint, inputs };
  await out.put(runLayout.stage3Plan(opts.runId), JSON.stringify(stored, null, 2) + '\n');
  return plan;
}

/** A cursor to resume from; one without a source position (none yet, or an older worker's) starts over. */
function resumeAt(resume: PlanCursor | undefined): PlanCursor {
  if (!resume?.position) return { shardCount: 0, imageCount: 0 };
  return { shardCount: resume.shardCount, imageCount: resume.imageCount, position: resume.position };
}

export async function readPlan(out: ObjectStore, runId: string): Promise<ShardPlan | undefined> {
  const stored = await readStoredPlan(out, runId);
  return stored && planOf(stored);
}

async function readStoredPlan(out: ObjectStore, runId: string): Promise<StoredPlan | undefined> {
  if (!(await out.exists(runLayout.stage3Plan(runId)))) return undefined;
  return planSchema.parse(JSON.parse((await out.get(runLayout.stage3Plan(runId))).toString('utf8')));
}

function planOf({ shardCount, imageCount, shardSize }: StoredPlan): ShardPlan {
  return { shardCount, imageCount, shardSize };
}

export async function readShardEntries(
  out: ObjectStore,
  runId: string,
  shard: number,
): Promise<ShardEntry[]> {
  const key = runLayout.shardInput(runId, shard);
  const text = (await out.get(key)).toString('utf8');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      const parsed = entrySchema.safeParse(JSON.parse(line));
      if (!parsed.success) throw new Error(`${out.uri(key)} line ${i + 1}: not a shard entry {"id", "uri"}`);
      return parsed.data;
    });
}
