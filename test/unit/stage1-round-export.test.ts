// lib/stage1/round-export.ts: a round's figures and its COCO instances from accepted annotations,
// and service/annotators.ts: tokens are stored only as hashes.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openObjectStore } from '../../lib/object-store.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';
import type { AnnotationRecord } from '../../lib/stage1/annotations.ts';
import { roundCoco, summarizeRound } from '../../lib/stage1/round-export.ts';
import { AnnotatorAccounts } from '../../service/annotators.ts';

function record(imageId: number, annotator: string, seconds: number, clicks: number): AnnotationRecord {
  const pixels = new Uint8Array(6 * 8);
  for (let y = 1; y < 4; y++) for (let x = 2; x < 6; x++) pixels[y * 8 + x] = 1;
  return {
    run: 'r',
    round: 1,
    imageId,
    image: `s3://b/photos/${imageId}.JPG`,
    annotator,
    submissionId: `${annotator}-${imageId}-${seconds}`,
    mask: compressRle(encodeMask(pixels, 6, 8)),
    seconds,
    clicks,
    model: 'm@1',
    acceptedAt: '2026-12-06T00:00:00Z',
  };
}

describe('a round summary', () => {
  const records = [
    record(1, 'a', 10, 2),
    record(1, 'a', 20, 4),
    record(2, 'b', 30, 3),
    record(3, 'b', 40, 5),
  ];

  it('gives seconds per mask (median, p90), masks per image and clicks, overall and per annotator', () => {
    const s = summarizeRound('r', 1, records, 1);
    expect(s.masks).toBe(4);
    expect(s.imagesAnnotated).toBe(3);
    expect(s.imagesFlagged).toBe(1);
    expect(s.secondsPerMask.median).toBe(25);
    expect(s.secondsPerMask.p90).toBeCloseTo(37, 10); // numpy: percentile([10,20,30,40], 90) = 37
    expect(s.masksPerImage).toEqual({ mean: 4 / 3, median: 1 });
    expect(s.clicksPerMask.mean).toBe(3.5);
    expect(s.models).toEqual({ 'm@1': 4 });
    expect(s.annotators.a).toEqual({ masks: 2, medianSeconds: 15, p90Seconds: 19, meanClicks: 3 });
  });

  it('is empty, not an error, for a round without masks', () => {
    const s = summarizeRound('r', 2, []);
    expect(s.masks).toBe(0);
    expect(s.secondsPerMask).toEqual({ median: null, p90: null });
  });

  it('exports COCO instances with area and bbox from the RLE and each mask once', () => {
    const coco = roundCoco('r', 1, records);
    expect(coco.images.map((i) => i.file_name)).toEqual(['1.jpg', '2.jpg', '3.jpg']);
    expect(coco.images[0]).toMatchObject({ width: 8, height: 6, source: 's3://b/photos/1.JPG' });
    expect(coco.annotations).toHaveLength(4);
    expect(coco.annotations[0]).toMatchObject({ area: 12, bbox: [2, 1, 4, 3], category_id: 1, iscrowd: 0 });
    expect(new Set(coco.annotations.map((a) => a.id)).size).toBe(4);
  });
});

describe('annotator accounts', () => {
  it('store only a hash of the token, verify it, and refuse a taken or unusable name', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'sae-accounts-'));
    try {
      const store = openObjectStore(pathToFileURL(root).href);
      const accounts = new AnnotatorAccounts(store, 0);
      const token = await accounts.add('alice');
      const stored = (await store.get('annotators/alice.json')).toString('utf8');
      expect(stored).not.toContain(token);
      expect(stored).not.toContain(token.slice(4, 20));
      // A fresh service (nothing cached) finds the account in storage.
      const fresh = new AnnotatorAccounts(store, 0);
      expect(await fresh.verify(token)).toBe('alice');
      expect(await fresh.verify(token + 'x')).toBeUndefined();
      await expect(accounts.add('alice')).rejects.toThrow(/exists/);
      await expect(accounts.add('../etc')).rejects.toThrow(/not a usable annotator name/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
