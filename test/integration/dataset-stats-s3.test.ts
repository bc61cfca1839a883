// The dataset manifest, statistics and release copies against the real S3-compatible server of the
// dev stack: run outputs, masks and source images all live in the bucket, as in production.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { buildDataset, type DatasetStats } from '../../lib/dataset/build.ts';
import { LineSpool } from '../../lib/dataset/line-spool.ts';
import { loadImage } from '../../lib/images/image-io.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { ShardResultLine } from '../../lib/stage3/shard-runner.ts';
import { storeOptionsFor, testStack, uniqueTestPrefix } from '../helpers/stack.ts';

const { s3 } = testStack();
const s3Options = storeOptionsFor(testStack()).s3!;
const prefix = uniqueTestPrefix('dataset-stats-test');
const out = openObjectStore(`s3://${s3.bucket}/${prefix}`, { s3: s3Options });
const stores = new StoreCache({ s3: s3Options });
const RUN = 'r1';

afterAll(async () => {
  for await (const key of out.listKeys()) await out.delete(key);
  await out.close();
  await stores.close();
});

function masksFile(id: number, w: number, h: number, masks: Uint8Array[]) {
  return {
    image: { image_id: id, width: w, height: h, file_name: `${id}.jpg` },
    annotations: masks.map((mask, i) => ({ id: i, segmentation: compressRle(encodeMask(mask, h, w)) })),
  };
}

/**
 * Shard 0: image 0, a 40×30 JPEG with two masks (the whole image; its top-left pixel).
 * Shard 1: image 1, failed; image 2, a 12×10 PNG with no masks.
 */
async function writeRun(): Promise<void> {
  const grey = { create: { width: 40, height: 30, channels: 3 as const, background: '#808080' } };
  await out.put('images/0.jpg', await sharp(grey).jpeg().toBuffer());
  await out.put(
    'images/2.png',
    await sharp({ create: { ...grey.create, width: 12, height: 10 } })
      .png()
      .toBuffer(),
  );
  await out.put(runLayout.stage3Plan(RUN), JSON.stringify({ shardCount: 2, imageCount: 3, shardSize: 2 }));
  const whole = new Uint8Array(40 * 30).fill(1);
  const corner = new Uint8Array(40 * 30);
  corner[0] = 1;
  await out.put(runLayout.masks(RUN, 0), JSON.stringify(masksFile(0, 40, 30, [whole, corner])));
  await out.put(runLayout.masks(RUN, 2), JSON.stringify(masksFile(2, 12, 10, [])));
  const done = (id: number, file: string, w: number, h: number, count: number): ShardResultLine => ({
    key: out.uri(`images/${file}`),
    id,
    w,
    h,
    status: 'done',
    masks: runLayout.masks(RUN, id),
    count,
    model: 'sam-vit-b',
    ms: 10,
  });
  const failed: ShardResultLine = {
    key: out.uri('images/1.jpg'),
    id: 1,
    status: 'failed',
    error: 'ObjectNotFoundError: gone',
    count: 0,
    model: 'sam-vit-b',
    ms: 1,
  };
  const jsonl = (lines: ShardResultLine[]) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
  await out.put(runLayout.shardResult(RUN, 0), jsonl([done(0, '0.jpg', 40, 30, 2)]));
  await out.put(runLayout.shardResult(RUN, 1), jsonl([failed, done(2, '2.png', 12, 10, 0)]));
}

describe('buildDataset on S3', () => {
  it('writes the manifest, statistics and release copies into the bucket, the same bytes twice', async () => {
    await writeRun();
    const summary = await buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } });
    expect(summary).toMatchObject({ images: 2, imagesFailed: 1, masks: 2, releaseImages: 2 });

    const manifest = (await out.get(summary.manifestKey)).toString('utf8').trim().split('\n');
    expect(manifest.map((l) => JSON.parse(l) as unknown)).toEqual([
      {
        id: 0,
        image: `s3://${s3.bucket}/${prefix}/images/0.jpg`,
        width: 40,
        height: 30,
        masks: 'runs/r1/masks/0.json',
        count: 2,
        releaseImage: 'runs/r1/dataset/images/0.jpg',
        releaseScale: 0.5,
      },
      {
        id: 2,
        image: `s3://${s3.bucket}/${prefix}/images/2.png`,
        width: 12,
        height: 10,
        masks: 'runs/r1/masks/2.json',
        count: 0,
        releaseImage: 'runs/r1/dataset/images/2.jpg',
        releaseScale: 1,
      },
    ]);
    expect(JSON.parse((await out.get(summary.failedKey)).toString('utf8'))).toEqual({
      id: 1,
      image: `s3://${s3.bucket}/${prefix}/images/1.jpg`,
      error: 'ObjectNotFoundError: gone',
    });

    const stats = JSON.parse((await out.get(summary.statsKey)).toString('utf8')) as DatasetStats;
    expect(stats.masksPerImage).toMatchObject({ mean: 1, median: 1, min: 0, max: 2 });
    // The whole image: relative size 1, area 1200 (medium), centre (20, 15) → cell (16, 16).
    // Its corner pixel: relative size sqrt(1/1200) = .029, small, centre (.5, .5) → cell (0, 0).
    expect(stats.maskSize.coco).toMatchObject({ small: 1, medium: 1, large: 0 });
    expect(stats.centres.counts[16]![16]).toBe(1);
    expect(stats.centres.counts[0]![0]).toBe(1);
    expect(stats.processingMs).toBe(21);

    const copy = await loadImage(await out.get('runs/r1/dataset/images/0.jpg'));
    expect([copy.width, copy.height]).toEqual([20, 15]);

    const keys = [summary.manifestKey, summary.failedKey, summary.statsKey, 'runs/r1/dataset/images/0.jpg'];
    const first = await Promise.all(keys.map((k) => out.get(k)));
    await buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } });
    expect(await Promise.all(keys.map((k) => out.get(k)))).toEqual(first);
  });

  it('names the key of a missing masks file', async () => {
    await writeRun();
    await out.delete(runLayout.masks(RUN, 2));
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(
      /masks file "runs\/r1\/masks\/2\.json" of image 2 .* is missing/,
    );
  });
});

describe('LineSpool on S3', () => {
  it('streams a manifest too big for one PUT (multipart) and stores every line', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sae-spool-s3-'));
    try {
      const spool = await LineSpool.create(dir, 'big.jsonl');
      const lines = 150_000; // ~19 MiB, over the 16 MiB single-PUT limit
      for (let id = 0; id < lines; id++) {
        await spool.push({
          id,
          image: `s3://bucket/images/${String(id).padStart(9, '0')}.jpg`,
          count: id % 300,
          pad: 'x'.repeat(60),
        });
      }
      await spool.upload(out, 'spool/big.jsonl');
      const text = (await out.get('spool/big.jsonl')).toString('utf8');
      expect(text.length).toBeGreaterThan(16 << 20);
      const stored = text.trimEnd().split('\n');
      expect(stored.length).toBe(lines);
      expect(JSON.parse(stored[lines - 1]!)).toEqual({
        id: lines - 1,
        image: 's3://bucket/images/000149999.jpg',
        count: (lines - 1) % 300,
        pad: 'x'.repeat(60),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
