// The dry run of a shard: headers only, unreadable files named, and the AMG work a real run would do.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { planShards } from '../../lib/stage3/shard-plan.ts';
import { amgWork, probeShard, type ProbeLine } from '../../lib/stage3/shard-probe.ts';

const settings = {
  pointsPerSide: 32,
  cropNLayers: 0,
  cropOverlapRatio: 512 / 1500,
  cropNPointsDownscaleFactor: 1,
  maxImagePixels: 1_000_000,
};
let dir: string;
let stores: StoreCache;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sae-probe-'));
  stores = new StoreCache();
});
afterEach(async () => {
  await stores.close();
  rmSync(dir, { recursive: true, force: true });
});

const png = (w: number, h: number) =>
  sharp({ create: { width: w, height: h, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();

describe('probeShard', () => {
  it('records sizes of readable images, names unreadable ones, and counts the work', async () => {
    const images = stores.open(pathToFileURL(join(dir, 'images')).href);
    const out = stores.open(pathToFileURL(join(dir, 'out')).href);
    await images.put('a.png', await png(300, 200));
    await images.put('b.png', await png(2000, 1000)); // 2 MP, over the 1 MP limit
    await images.put('c.jpg', 'not an image');
    await planShards(out, stores, {
      runId: 'r',
      source: { prefix: images.rootUri, extensions: ['png', 'jpg'] },
      shardSize: 10,
    });

    const counts = await probeShard(out, stores, { runId: 'r', shard: 0, settings });
    expect(counts).toMatchObject({ images: 3, readable: 1, unreadable: 2, encoderRuns: 1, prompts: 1024 });
    expect(counts.megapixels).toBeCloseTo(0.06, 6);
    const lines = (await out.get(runLayout.shardProbe('r', 0)))
      .toString()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as ProbeLine);
    expect(lines[0]).toMatchObject({ status: 'readable', format: 'png', w: 300, h: 200 });
    expect(lines[1]!.error).toMatch(/b\.png is 2000×1000, over the 1000000-pixel limit/);
    expect(lines[2]!.error).toMatch(/c\.jpg/);
  });
});

describe('amgWork', () => {
  it("counts the paper's crop pyramid: 1 + 4 + 16 crops with 32², 16², 8² points", () => {
    const work = amgWork(1500, 2250, { ...settings, cropNLayers: 2, cropNPointsDownscaleFactor: 2 });
    expect(work).toEqual({ encoderRuns: 21, prompts: 1024 + 4 * 256 + 16 * 64 });
  });
});
