import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  drawAuditSample,
  lastSegment,
  seededSample,
  stem,
  uriFileName,
  type DoneLine,
} from '../../lib/audit/sample.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { runLayout } from '../../lib/run-layout.ts';

const items = Array.from({ length: 100 }, (_, i) => ({ id: i * 3 }));

describe('seededSample', () => {
  it('returns the same images for the same seed, in id order', () => {
    const a = seededSample(items, 10, 42);
    expect(seededSample(items, 10, 42)).toEqual(a);
    expect(a).toHaveLength(10);
    expect(a.map((i) => i.id)).toEqual([...a.map((i) => i.id)].sort((x, y) => x - y));
  });

  it('does not depend on the order the candidates are listed in', () => {
    const shuffled = [...items].reverse();
    expect(seededSample(shuffled, 10, 42)).toEqual(seededSample(items, 10, 42));
  });

  it('gives other images for another seed', () => {
    const ids = (seed: number) =>
      seededSample(items, 10, seed)
        .map((i) => i.id)
        .join(',');
    expect(ids(1)).not.toBe(ids(2));
  });

  it('keeps the sample of a seed when a smaller sample is asked for (a prefix by rank)', () => {
    const big = new Set(seededSample(items, 30, 5).map((i) => i.id));
    for (const item of seededSample(items, 10, 5)) expect(big.has(item.id)).toBe(true);
  });

  it('takes everything when asked for more than there is, and refuses a bad size', () => {
    expect(seededSample(items, 1000, 0)).toHaveLength(100);
    expect(seededSample([], 5, 0)).toEqual([]);
    expect(() => seededSample(items, -1, 0)).toThrow(/sample size/);
  });
});

describe('file names', () => {
  it('takes the last segment of a URI, percent-decoded for file:// only', () => {
    expect(uriFileName('s3://bucket/images/124080.jpg')).toBe('124080.jpg');
    expect(uriFileName('file:///data/my%20photo.JPG')).toBe('my photo.JPG');
    expect(uriFileName('s3://bucket/raw%20name.jpg')).toBe('raw%20name.jpg'); // S3 keys are not encoded
    expect(uriFileName('file:///data/100%.jpg')).toBe('100%.jpg');
  });

  it('takes the last segment of keys and COCO file names, with either slash', () => {
    expect(lastSegment('photos/a.jpg')).toBe('a.jpg');
    expect(lastSegment('C:\\data\\b.jpg')).toBe('b.jpg');
    expect(lastSegment('c.png')).toBe('c.png');
  });

  it('drops only the last extension', () => {
    expect(stem('124080.jpg')).toBe('124080');
    expect(stem('a.b.png')).toBe('a.b');
    expect(stem('.hidden')).toBe('.hidden');
    expect(stem('noext')).toBe('noext');
  });
});

describe('drawAuditSample', () => {
  it('draws the same sample as seededSample over every candidate, one shard at a time', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'sae-audit-sample-'));
    try {
      const out = openObjectStore(pathToFileURL(root).href);
      // 4 shards of 25 images; every 7th failed; shard 3 has no results yet.
      const line = (id: number) =>
        id % 7 === 0
          ? { key: `s3://b/${id}.jpg`, id, model: 'm', ms: 1, status: 'failed', error: 'x' }
          : {
              key: `s3://b/${id}.jpg`,
              id,
              model: 'm',
              ms: 1,
              status: 'done',
              w: 4,
              h: 4,
              count: 0,
              masks: `m/${id}`,
            };
      await out.put(
        runLayout.stage3Plan('r'),
        JSON.stringify({ shardCount: 4, imageCount: 100, shardSize: 25 }),
      );
      for (let shard = 0; shard < 3; shard++) {
        const lines = Array.from({ length: 25 }, (_, i) => JSON.stringify(line(shard * 25 + i)));
        await out.put(runLayout.shardResult('r', shard), lines.join('\n') + '\n');
      }
      const isCandidate = (l: DoneLine) => l.id % 2 === 0; // the reference has the even ids
      const drawn = await drawAuditSample(out, 'r', isCandidate, 5, 9);

      const done = Array.from({ length: 75 }, (_, id) => line(id)).filter((l) => l.status === 'done');
      const candidates = done.filter((l) => l.id % 2 === 0);
      expect(drawn.sample.map((l) => l.id)).toEqual(seededSample(candidates, 5, 9).map((l) => l.id));
      expect(drawn).toMatchObject({
        segmented: done.length,
        failed: 75 - done.length,
        unfinishedShards: 1,
        candidates: candidates.length,
        examples: ['s3://b/1.jpg', 's3://b/2.jpg', 's3://b/3.jpg'],
      });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
