// Shard planning and the resumable shard runner on a file:// store. The segmenter here is a stand-in
// (this is a unit test of the runner alone); the real AMG is exercised by the integration suites.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { runLayout } from '../../lib/run-layout.ts';
import {
  PlanMismatchError,
  planShards,
  readShardEntries,
  type PlanCursor,
} from '../../lib/stage3/shard-plan.ts';
import {
  readShardResult,
  runShard,
  ShardPartsMissingError,
  ShardSettingsMismatchError,
  type ImageSegmenter,
} from '../../lib/stage3/shard-runner.ts';

let dir: string;
let stores: StoreCache;
let images: ObjectStore;
let out: ObjectStore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sae-shard-'));
  stores = new StoreCache();
  images = stores.open(pathToFileURL(join(dir, 'images')).href);
  out = stores.open(pathToFileURL(join(dir, 'out')).href);
  for (let i = 0; i < 7; i++) await images.put(`img-${i}.jpg`, `image ${i}`);
  await images.put('notes.txt', 'not an image');
  await images.put('broken.jpg', 'BROKEN');
});

afterEach(async () => {
  await stores.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Emits one annotation per image; fails on "BROKEN" bytes and, if asked, crashes after N calls. */
function standInSegmenter(crashAfter = Infinity): ImageSegmenter & { calls: string[] } {
  const calls: string[] = [];
  return {
    modelId: 'stand-in@1',
    calls,
    async segment(bytes, image) {
      if (calls.length >= crashAfter) throw Object.assign(new Error('worker died'), { retryable: true });
      calls.push(image.fileName);
      if (bytes.toString() === 'BROKEN') throw new Error('corrupt JPEG');
      return {
        width: 4,
        height: 3,
        sa1b: { image: { image_id: image.id }, annotations: [{ id: 1 }] } as never,
      };
    },
  };
}

const source = () => ({ prefix: images.rootUri, extensions: ['jpg'] });
/** What the stand-in segmenter's masks are made with, as segmentShard records it. */
const SETTINGS = { model: 'file:///models/stand-in', segmenter: { pointsPerSide: 4 } };

describe('planShards', () => {
  it('writes shard manifests with ordinal ids in listing order and skips other extensions', async () => {
    const plan = await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 3 });
    expect(plan).toEqual({ shardCount: 3, imageCount: 8, shardSize: 3 });
    const first = await readShardEntries(out, 'r1', 0);
    expect(first.map((e) => e.id)).toEqual([0, 1, 2]);
    expect(first[0]!.uri).toBe(images.uri('broken.jpg'));
    expect((await readShardEntries(out, 'r1', 2)).map((e) => e.id)).toEqual([6, 7]);
  });

  it('reuses an existing plan instead of planning again', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 3 });
    await images.put('img-9.jpg', 'late arrival');
    const again = await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 3 });
    expect(again.imageCount).toBe(8);
  });

  it('resumes an interrupted planning after its last shard, with the same manifests as one pass', async () => {
    const whole = await planShards(out, stores, { runId: 'once', source: source(), shardSize: 2 });
    const cursors: PlanCursor[] = [];
    const dies = planShards(out, stores, {
      runId: 'r1',
      source: source(),
      shardSize: 2,
      onShard: (cursor) => {
        cursors.push(cursor);
        if (cursor.shardCount === 2) throw new Error('worker died');
      },
    });
    await expect(dies).rejects.toThrow('worker died');
    expect(await out.exists(runLayout.stage3Plan('r1'))).toBe(false);

    const resumed: number[] = [];
    const plan = await planShards(out, stores, {
      runId: 'r1',
      source: source(),
      shardSize: 2,
      resume: cursors.at(-1),
      onShard: (cursor) => resumed.push(cursor.shardCount),
    });
    expect(resumed).toEqual([3, 4]); // shards 0 and 1 were not written again
    expect(plan).toEqual(whole);
    for (let shard = 0; shard < whole.shardCount; shard++) {
      expect(await readShardEntries(out, 'r1', shard)).toEqual(await readShardEntries(out, 'once', shard));
    }
  });

  it('refuses a plan cut from other inputs, naming what differs', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 3 });
    const other = planShards(out, stores, { runId: 'r1', source: source(), shardSize: 4 });
    await expect(other).rejects.toThrow(PlanMismatchError);
    await expect(other).rejects.toThrow(/shardSize: 3, now 4/);
    const png = planShards(out, stores, {
      runId: 'r1',
      source: { ...source(), extensions: ['png'] },
      shardSize: 3,
    });
    await expect(png).rejects.toThrow(/images: .*"jpg".*now .*"png"/);
  });

  it('refuses a plan that does not say what it was cut from', async () => {
    await out.put(runLayout.stage3Plan('r1'), JSON.stringify({ shardCount: 1, imageCount: 8, shardSize: 8 }));
    await expect(planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 })).rejects.toThrow(
      /older sa-engine that did not record its inputs/,
    );
  });
});

describe('runShard', () => {
  it('goes on only with the settings its finished masks were made with', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const opts = { runId: 'r1', shard: 0, batchImages: 3, resumeFrom: 0, settings: SETTINGS };
    await runShard(out, stores, { ...opts, segmenter: standInSegmenter() });

    const again = standInSegmenter();
    expect(await runShard(out, stores, { ...opts, segmenter: again })).toEqual({
      images: 8,
      done: 7,
      failed: 1,
      masks: 7,
    });
    expect(again.calls).toEqual([]); // the finished result is reported, not redone

    const otherModel = { ...SETTINGS, model: 'file:///models/other' };
    const refused = runShard(out, stores, { ...opts, segmenter: standInSegmenter(), settings: otherModel });
    await expect(refused).rejects.toThrow(ShardSettingsMismatchError);
    await expect(refused).rejects.toThrow(
      /model: "file:\/\/\/models\/stand-in", now "file:\/\/\/models\/other"/,
    );
  });

  it('refuses parts left by an sa-engine that did not record their settings', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    await out.put(runLayout.shardPart('r1', 0, 0), '{"id":0,"status":"failed","error":"x","count":0}\n');
    const run = runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 3,
      segmenter: standInSegmenter(),
      resumeFrom: 0,
      settings: SETTINGS,
    });
    await expect(run).rejects.toThrow(/did not record them/);
  });

  it('segments every image, records failures with their error, writes one result line per image', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const counts = await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 3,
      segmenter: standInSegmenter(),
      resumeFrom: 0,
      settings: SETTINGS,
    });
    expect(counts).toEqual({ images: 8, done: 7, failed: 1, masks: 7 });
    const lines = (await readShardResult(out, 'r1', 0))!;
    expect(lines.map((l) => l.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(lines[0]).toMatchObject({ status: 'failed', error: 'Error: corrupt JPEG', count: 0 });
    expect(lines[1]).toMatchObject({ status: 'done', w: 4, h: 3, count: 1, masks: runLayout.masks('r1', 1) });
    expect(await out.exists(runLayout.masks('r1', 0))).toBe(false);
    expect(await out.exists(runLayout.masks('r1', 7))).toBe(true);
    // Part files are folded into the result manifest.
    const parts: string[] = [];
    for await (const key of out.listKeys(runLayout.shardPartsPrefix('r1', 0))) parts.push(key);
    expect(parts).toEqual([]);
  });

  it('with firstImage, leaves the annotated images out; a shard of only those finishes empty', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 4 });
    const run = (shard: number) =>
      runShard(out, stores, {
        runId: 'r1',
        shard,
        batchImages: 3,
        firstImage: 6,
        segmenter: standInSegmenter(),
        resumeFrom: 0,
        settings: SETTINGS,
      });
    expect(await run(0)).toEqual({ images: 0, done: 0, failed: 0, masks: 0 });
    expect(await readShardResult(out, 'r1', 0)).toEqual([]);
    expect(await run(1)).toEqual({ images: 2, done: 2, failed: 0, masks: 2 });
    expect((await readShardResult(out, 'r1', 1))!.map((l) => l.id)).toEqual([6, 7]);
    expect(await out.exists(runLayout.masks('r1', 5))).toBe(false);
  });

  it('resumes after a crash at the first unfinished batch and duplicates nothing', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const beats: number[] = [];
    const crashing = standInSegmenter(4);
    await expect(
      runShard(out, stores, {
        runId: 'r1',
        shard: 0,
        batchImages: 3,
        segmenter: crashing,
        resumeFrom: 0,
        settings: SETTINGS,
        onBatchDone: (n) => beats.push(n),
      }),
    ).rejects.toThrow('worker died');
    expect(beats).toEqual([3]); // one batch finished before the crash

    const retry = standInSegmenter();
    const counts = await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 3,
      segmenter: retry,
      resumeFrom: beats.at(-1)!,
      settings: SETTINGS,
    });
    expect(retry.calls).toEqual(['img-2.jpg', 'img-3.jpg', 'img-4.jpg', 'img-5.jpg', 'img-6.jpg']);
    expect(counts).toEqual({ images: 8, done: 7, failed: 1, masks: 7 });
    const ids = (await readShardResult(out, 'r1', 0))!.map((l) => l.id);
    expect(ids).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('a retry after the shard finished only reports the stored result', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 8,
      segmenter: standInSegmenter(),
      resumeFrom: 0,
      settings: SETTINGS,
    });
    const again = standInSegmenter();
    const counts = await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 8,
      segmenter: again,
      resumeFrom: 0,
      settings: SETTINGS,
    });
    expect(again.calls).toEqual([]);
    expect(counts.done).toBe(7);
  });

  it('records an image that vanished from storage as failed, naming it', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    await images.delete('img-3.jpg');
    await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 4,
      segmenter: standInSegmenter(),
      resumeFrom: 0,
      settings: SETTINGS,
    });
    const line = (await readShardResult(out, 'r1', 0))!.find((l) => l.id === 4)!;
    expect(line.status).toBe('failed');
    expect(line.error).toBe(`ObjectNotFoundError: image not found: ${images.uri('img-3.jpg')}`);
  });

  it('refuses an image over the byte limit before downloading it, as a failed image', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    await images.put('img-5.jpg', 'x'.repeat(3 * 1024 * 1024));
    const segmenter = standInSegmenter();
    const counts = await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 4,
      segmenter,
      resumeFrom: 0,
      settings: SETTINGS,
      maxImageBytes: 2 * 1024 * 1024,
    });
    expect(counts).toEqual({ images: 8, done: 6, failed: 2, masks: 6 });
    expect(segmenter.calls).not.toContain('img-5.jpg');
    const line = (await readShardResult(out, 'r1', 0))!.find((l) => l.key.endsWith('/img-5.jpg'))!;
    expect(line).toMatchObject({ status: 'failed', count: 0 });
    expect(line.error).toBe(
      'ImageFileTooLargeError: img-5.jpg: the file is 3 MiB, over the 2 MiB limit ' +
        '(stage3.maxImageBytes = 2097152); refused before decoding',
    );
  });

  it('a lost part file fails the shard with ShardPartsMissingError', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const beats: number[] = [];
    const opts = { runId: 'r1', shard: 0, batchImages: 3, resumeFrom: 0, settings: SETTINGS };
    await expect(
      runShard(out, stores, { ...opts, segmenter: standInSegmenter(4), onBatchDone: (n) => beats.push(n) }),
    ).rejects.toThrow('worker died');
    await out.delete(runLayout.shardPart('r1', 0, 0));
    const error = await runShard(out, stores, {
      ...opts,
      segmenter: standInSegmenter(),
      resumeFrom: beats.at(-1)!,
      settings: SETTINGS,
    }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ShardPartsMissingError);
    expect((error as Error).name).toBe('ShardPartsMissingError');
    expect((error as Error).message).toMatch(/5 result lines for 8 images; parts are missing/);
  });
});

/**
 * A worker process that dies mid-image, in miniature: the segmenter never returns on the poison
 * image and the attempt is abandoned there (as a dead process abandons it), leaving storage as a
 * killed worker would. The next attempt then starts from the last batch heartbeat, as a retry does.
 */
describe('runShard with an image that kills the worker', () => {
  const POISON = 'img-3.jpg'; // id 4, the second image of the second batch of 3
  let poisons = [POISON];
  beforeEach(() => {
    poisons = [POISON];
  });

  function poisonedSegmenter(): ImageSegmenter & { calls: string[]; reachedPoison: Promise<void> } {
    let reached!: () => void;
    const reachedPoison = new Promise<void>((resolve) => (reached = resolve));
    const inner = standInSegmenter();
    return {
      modelId: inner.modelId,
      calls: inner.calls,
      reachedPoison,
      async segment(bytes, image) {
        if (poisons.includes(image.fileName)) {
          inner.calls.push(image.fileName);
          reached();
          return new Promise(() => {}); // the process is gone: nothing ever comes back
        }
        return inner.segment(bytes, image);
      },
    };
  }

  /** One attempt: runs until it finishes or dies at the poison image; returns what it reached. */
  async function attempt(resumeFrom: number, watchForCrashes: boolean, beats: number[]) {
    const segmenter = poisonedSegmenter();
    const run = runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 3,
      segmenter,
      resumeFrom,
      settings: SETTINGS,
      watchForCrashes,
      onBatchDone: (n) => beats.push(n),
    });
    const outcome = await Promise.race([
      run.then(() => 'finished' as const),
      segmenter.reachedPoison.then(() => 'died' as const),
    ]);
    return { outcome, calls: segmenter.calls };
  }

  it('is recorded as failed after it killed the worker crashLimit times, and its batch is whole', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const beats: number[] = [];
    const outcomes: string[] = [];
    // The first attempt is not watched (no retry yet); every retry is.
    for (let i = 0; i < 10; i++) {
      const { outcome } = await attempt(beats.at(-1) ?? 0, i > 0, beats);
      outcomes.push(outcome);
      if (outcome === 'finished') break;
    }
    // Died on attempts 1-4; three of those deaths were seen by a watched attempt, so the fifth skips it.
    expect(outcomes).toEqual(['died', 'died', 'died', 'died', 'finished']);
    const lines = (await readShardResult(out, 'r1', 0))!;
    expect(lines.map((l) => l.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const poisoned = lines.find((l) => l.key.endsWith(`/${POISON}`))!;
    expect(poisoned).toMatchObject({ status: 'failed', count: 0 });
    expect(poisoned.error).toBe(
      `WorkerCrashError: ${images.uri(POISON)} crashed (or hung) the worker 3 times in a row; ` +
        'recorded as failed and not tried again',
    );
    expect(lines.filter((l) => l.status === 'done')).toHaveLength(6); // all but the poison and broken.jpg
    const left: string[] = [];
    for await (const key of out.listKeys(runLayout.shardPartsPrefix('r1', 0))) left.push(key);
    expect(left).toEqual([]);
  });

  it('two poison images in one batch both end up failed, each after its own deaths', async () => {
    poisons = ['img-3.jpg', 'img-4.jpg']; // ids 4 and 5: the batch 3..5
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const beats: number[] = [];
    const outcomes: string[] = [];
    for (let i = 0; i < 12; i++) {
      const { outcome } = await attempt(beats.at(-1) ?? 0, i > 0, beats);
      outcomes.push(outcome);
      if (outcome === 'finished') break;
    }
    expect(outcomes).toEqual([...Array<string>(7).fill('died'), 'finished']);
    const lines = (await readShardResult(out, 'r1', 0))!;
    expect(lines.map((l) => l.id)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(lines.filter((l) => l.error?.startsWith('WorkerCrashError')).map((l) => l.id)).toEqual([4, 5]);
  });

  it('under the limit the image is tried again, and segmented once an attempt gets through', async () => {
    await planShards(out, stores, { runId: 'r1', source: source(), shardSize: 8 });
    const beats: number[] = [];
    for (let i = 0; i < 2; i++) expect((await attempt(beats.at(-1) ?? 0, true, beats)).outcome).toBe('died');
    // Two deaths seen: the image is tried a third time, gets through, and the shard finishes.
    const counts = await runShard(out, stores, {
      runId: 'r1',
      shard: 0,
      batchImages: 3,
      segmenter: standInSegmenter(),
      resumeFrom: beats.at(-1)!,
      settings: SETTINGS,
      watchForCrashes: true,
    });
    expect(counts).toEqual({ images: 8, done: 7, failed: 1, masks: 7 });
  });
});
