// The dataset manifest, statistics and release copies of a finished stage-3 run. Each test builds
// a small fake run directly in a file:// store (plan, shard results, SA-1B JSONs holding real RLEs
// of masks drawn by hand) and checks every number against a hand computation.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  buildDataset,
  buildDatasetShard,
  finishDataset,
  releaseSize,
  type DatasetProgress,
  type DatasetStats,
  type FailedLine,
  type ManifestLine,
} from '../../lib/dataset/build.ts';
import { LineSpool } from '../../lib/dataset/line-spool.ts';
import { centroidCell, maskMoments } from '../../lib/dataset/mask-moments.ts';
import { loadImage } from '../../lib/images/image-io.ts';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { compressRle, decodeRle, encodeMask, rleArea, rleToBbox } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { ShardPlan } from '../../lib/stage3/shard-plan.ts';
import type { AnnotationRecord } from '../../lib/stage1/annotations.ts';
import { writeRoundProvenance } from '../../lib/stage1/provenance.ts';
import type { ShardResultLine } from '../../lib/stage3/shard-runner.ts';
import { prng } from '../helpers/random.ts';

const RUN = 'r1';

let root: string;
let out: ObjectStore;
let stores: StoreCache;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'sae-dataset-test-'));
  out = openObjectStore(pathToFileURL(root).href);
  stores = new StoreCache();
});

afterEach(async () => {
  await stores.close();
  await rm(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Building a fake run
// ---------------------------------------------------------------------------------------------

/** A w×h row-major mask with the rectangle [x0, x1) × [y0, y1) set. */
function rect(w: number, h: number, x0: number, y0: number, x1: number, y1: number): Uint8Array {
  const mask = new Uint8Array(w * h);
  for (let y = y0; y < y1; y++) mask.fill(1, y * w + x0, y * w + x1);
  return mask;
}

function pixel(w: number, h: number, x: number, y: number): Uint8Array {
  return rect(w, h, x, y, x + 1, y + 1);
}

/** The SA-1B per-image JSON (sam-spec §4) the AMG would write for these masks. */
function sa1bFile(id: number, w: number, h: number, masks: Uint8Array[]) {
  return {
    image: { image_id: id, width: w, height: h, file_name: `${id}.jpg` },
    annotations: masks.map((mask, i) => {
      const rle = encodeMask(mask, h, w);
      return {
        id: i,
        segmentation: compressRle(rle),
        bbox: rleToBbox(rle),
        area: rleArea(rle),
        predicted_iou: 0.95,
        point_coords: [[0, 0]],
        crop_box: [0, 0, w, h],
        stability_score: 0.97,
      };
    }),
  };
}

interface FakeImage {
  id: number;
  w: number;
  h: number;
  masks?: Uint8Array[]; // left out: the image failed
  model?: string;
  ms: number;
}

function imageUri(id: number): string {
  return out.uri(`images/${id}.png`);
}

/** Writes the plan, shard result manifests (lines in the order given) and masks files. */
async function writeRun(shards: FakeImage[][]): Promise<void> {
  const imageCount = shards.reduce((n, s) => n + s.length, 0);
  const plan: ShardPlan = { shardCount: shards.length, imageCount, shardSize: 3 };
  await out.put(runLayout.stage3Plan(RUN), JSON.stringify(plan));
  for (const [shard, images] of shards.entries()) {
    const lines = images.map((image) => resultLine(image));
    await out.put(runLayout.shardResult(RUN, shard), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    for (const image of images) {
      if (image.masks) {
        const file = sa1bFile(image.id, image.w, image.h, image.masks);
        await out.put(runLayout.masks(RUN, image.id), JSON.stringify(file));
      }
    }
  }
}

function resultLine(image: FakeImage): ShardResultLine {
  const base = { key: imageUri(image.id), id: image.id, model: image.model ?? 'sam-a', ms: image.ms };
  if (!image.masks) {
    return { ...base, status: 'failed', error: 'CorruptImageError: truncated JPEG', count: 0 };
  }
  const masks = runLayout.masks(RUN, image.id);
  return { ...base, w: image.w, h: image.h, status: 'done', masks, count: image.masks.length };
}

/** A stage-1 annotation record as the task workflow stores it (only its provenance is read here). */
function annotation(
  round: number,
  imageId: number,
  annotator: string,
  submissionId: string,
): AnnotationRecord {
  return {
    run: RUN,
    round,
    imageId,
    image: imageUri(imageId),
    annotator,
    submissionId,
    mask: { size: [1, 1], counts: '01' },
    seconds: 12.5,
    clicks: 3,
    model: 'sae-ref@4',
    acceptedAt: '2026-12-07T00:00:00Z',
  };
}

async function readJson<T>(key: string): Promise<T> {
  return JSON.parse((await out.get(key)).toString('utf8')) as T;
}

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of store.listKeys(prefix)) keys.push(key);
  return keys;
}

/** Everything the dataset build wrote, so the next build starts from scratch. */
async function removeDataset(): Promise<void> {
  for (const key of await keysUnder(out, 'runs/r1/dataset/')) await out.delete(key);
}

async function readLines(key: string): Promise<unknown[]> {
  const text = (await out.get(key)).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);
}

// ---------------------------------------------------------------------------------------------
// The main fake run. Every mask below is annotated with its hand-computed measures:
//   rel = sqrt(area / image area)   bin edges 0, .01, .02, .05, .1, .2, .5, 1
//   centre cell = floor(32 · (mean pixel x + ½) / w), likewise for rows
// ---------------------------------------------------------------------------------------------

const image0: FakeImage = {
  id: 0,
  w: 20,
  h: 10,
  ms: 100,
  masks: [
    rect(20, 10, 0, 0, 4, 2), //  area 8:   rel .2 exactly (edge) → [.2,.5); centre (2, 1) → cell (3, 3)
    rect(20, 10, 0, 0, 20, 10), // area 200: rel 1 → [.5,1]; centre (10, 5) → cell (16, 16)
    pixel(20, 10, 19, 9), //        area 1:   rel .0707 → [.05,.1); centre (19.5, 9.5) → cell (30, 31)
  ],
};
const image1: FakeImage = { id: 1, w: 0, h: 0, ms: 7 }; // failed
const image2: FakeImage = {
  id: 2,
  w: 10,
  h: 10,
  ms: 200,
  model: 'sam-b',
  masks: [
    pixel(10, 10, 0, 0), //         area 1:  rel .1 exactly (edge) → [.1,.2); centre (.5, .5) → cell (1, 1)
    rect(10, 10, 5, 0, 10, 10), //  area 50: rel .707 → [.5,1]; centre (7.5, 5) → cell (16, 24)
    new Uint8Array(100), //         empty: rel 0 → [0,.01); small; no centre
  ],
};
const image3: FakeImage = { id: 3, w: 8, h: 6, ms: 30, masks: [] };
const image4: FakeImage = {
  id: 4,
  w: 100,
  h: 100,
  ms: 400,
  masks: [
    rect(100, 100, 0, 0, 100, 100), // area 10000: large; rel 1 → [.5,1]; centre (50, 50) → cell (16, 16)
    rect(100, 100, 0, 60, 40, 100), // area 1600: medium; rel .4 → [.2,.5); centre (20, 80) → cell (25, 6)
    pixel(100, 100, 12, 12), //        area 1: rel .01 exactly (edge) → [.01,.02); centre (12.5, 12.5) → cell (4, 4), on edges
    rect(100, 100, 10, 0, 30, 100), // area 2000: medium; rel .447 → [.2,.5); centre (20, 50) → cell (16, 6)
  ],
};
// 12 single-pixel masks covering a 4×3 image: rel sqrt(1/12) = .289 → [.2,.5); centre of pixel
// (x, y) → column floor(8x + 4) = 4, 12, 20, 28 and row floor((32y + 16) / 3) = 5, 16, 26.
const image5: FakeImage = {
  id: 5,
  w: 4,
  h: 3,
  ms: 50,
  masks: Array.from({ length: 12 }, (_, i) => pixel(4, 3, i % 4, Math.floor(i / 4))),
};

/** Shard 1 lists its images out of order on purpose: the manifest must still be sorted by id. */
const mainRun = [
  [image0, image1, image2],
  [image5, image3, image4],
];

function expectedCentres(): number[][] {
  const grid = Array.from({ length: 32 }, () => new Array<number>(32).fill(0));
  const cells: Array<[number, number]> = [
    [3, 3],
    [16, 16],
    [30, 31], // image 0
    [1, 1],
    [16, 24], // image 2
    [16, 16],
    [25, 6],
    [4, 4],
    [16, 6], // image 4
  ];
  for (const row of [5, 16, 26]) for (const column of [4, 12, 20, 28]) cells.push([row, column]); // image 5
  for (const [row, column] of cells) grid[row]![column]! += 1;
  return grid;
}

describe('buildDataset on a fake run', () => {
  it('returns keys and counts only', async () => {
    await writeRun(mainRun);
    const summary = await buildDataset(out, stores, { runId: RUN });
    expect(summary).toEqual({
      images: 5,
      imagesFailed: 1,
      masks: 22,
      manifestKey: 'runs/r1/dataset/manifest.jsonl',
      failedKey: 'runs/r1/dataset/failed.jsonl',
      statsKey: 'runs/r1/dataset/stats.json',
      releaseImages: 0,
    });
  });

  it('writes the manifest sorted by id, and the failed images with their errors', async () => {
    await writeRun(mainRun);
    await buildDataset(out, stores, { runId: RUN });
    const line = (image: FakeImage) => ({
      id: image.id,
      image: imageUri(image.id),
      width: image.w,
      height: image.h,
      masks: `runs/r1/masks/${image.id}.json`,
      count: image.masks!.length,
    });
    expect(await readLines('runs/r1/dataset/manifest.jsonl')).toEqual(
      [image0, image2, image3, image4, image5].map(line),
    );
    expect(await readLines('runs/r1/dataset/failed.jsonl')).toEqual([
      { id: 1, image: imageUri(1), error: 'CorruptImageError: truncated JPEG' },
    ]);
  });

  it('computes the counts and masks-per-image statistics', async () => {
    await writeRun(mainRun);
    await buildDataset(out, stores, { runId: RUN });
    const stats = await readJson<DatasetStats>('runs/r1/dataset/stats.json');
    expect(stats.run).toBe(RUN);
    expect(stats.images).toBe(5);
    expect(stats.imagesFailed).toBe(1);
    expect(stats.masks).toBe(22);
    expect(stats.emptyMasks).toBe(1);
    // Masks per image: 3, 3, 0, 4, 12 → sorted 0 3 3 4 12.
    expect(stats.masksPerImage).toEqual({
      mean: 22 / 5,
      median: 3,
      min: 0,
      max: 12,
      histogram: [
        { label: '0', min: 0, max: 0, count: 1 },
        { label: '1-10', min: 1, max: 10, count: 3 },
        { label: '11-50', min: 11, max: 50, count: 1 },
        { label: '51-100', min: 51, max: 100, count: 0 },
        { label: '101-200', min: 101, max: 200, count: 0 },
        { label: '>200', min: 201, max: null, count: 0 },
      ],
    });
    expect(stats.models).toEqual(['sam-a', 'sam-b']);
    expect(stats.processingMs).toBe(100 + 7 + 200 + 30 + 400 + 50);
    expect(stats.release).toBeNull();
  });

  it('computes the relative mask sizes and the COCO size classes', async () => {
    await writeRun(mainRun);
    await buildDataset(out, stores, { runId: RUN });
    const { maskSize } = await readJson<DatasetStats>('runs/r1/dataset/stats.json');
    expect(maskSize.relativeSize).toBe('sqrt(mask area / image area)');
    expect(maskSize.histogram.map((b) => [b.label, b.count])).toEqual([
      ['0-0.01', 1], //   image 2's empty mask
      ['0.01-0.02', 1], // image 4's single pixel
      ['0.02-0.05', 0],
      ['0.05-0.1', 1], //  image 0's single pixel
      ['0.1-0.2', 1], //   image 2's single pixel
      ['0.2-0.5', 15], //  image 0 (1), image 4 (2), image 5 (12)
      ['0.5-1', 3], //     the three masks covering half or all of their image
    ]);
    const relSum =
      [0.2, 1, Math.sqrt(1 / 200)].reduce((a, b) => a + b) +
      [0.1, Math.sqrt(0.5), 0].reduce((a, b) => a + b) +
      [1, 0.4, 0.01, Math.sqrt(0.2)].reduce((a, b) => a + b) +
      12 * Math.sqrt(1 / 12);
    expect(maskSize.meanRelativeSize).toBeCloseTo(relSum / 22, 12);
    // Small: everything under 32² = 1024 px (19 masks); medium: 1600 and 2000 px; large: 10000 px.
    expect(maskSize.coco).toEqual({ small: 19, medium: 2, large: 1, smallBelow: 1024, mediumBelow: 9216 });
  });

  it('counts mask centres on a 32×32 grid normalised to the image', async () => {
    await writeRun(mainRun);
    await buildDataset(out, stores, { runId: RUN });
    const { centres } = await readJson<DatasetStats>('runs/r1/dataset/stats.json');
    expect(centres.grid).toBe(32);
    expect(centres.counts).toEqual(expectedCentres());
  });

  it('keeps stats.json readable: heatmap rows and histogram bins on one line each', async () => {
    await writeRun(mainRun);
    await buildDataset(out, stores, { runId: RUN });
    const text = (await out.get('runs/r1/dataset/stats.json')).toString('utf8');
    expect(text).toContain(`[${new Array(32).fill(0).join(', ')}]`);
    expect(text).toContain('{ "label": "1-10", "min": 1, "max": 10, "count": 3 }');
    expect(text.split('\n').length).toBeLessThan(100);
  });

  it('reports progress per shard', async () => {
    await writeRun(mainRun);
    const seen: DatasetProgress[] = [];
    await buildDataset(out, stores, { runId: RUN, onProgress: (p) => seen.push(p) });
    expect(seen.at(-1)).toEqual({ shardsDone: 2, shardCount: 2, images: 5, imagesFailed: 1, masks: 22 });
    expect(seen.map((p) => p.shardsDone)).toEqual([1, 2]);
  });

  it('writes identical bytes when built again from scratch', async () => {
    await writeRun(mainRun);
    const keys = [
      'runs/r1/dataset/manifest.jsonl',
      'runs/r1/dataset/failed.jsonl',
      'runs/r1/dataset/stats.json',
    ];
    await buildDataset(out, stores, { runId: RUN });
    const first = await Promise.all(keys.map((k) => out.get(k)));
    await removeDataset();
    await buildDataset(out, stores, { runId: RUN });
    const second = await Promise.all(keys.map((k) => out.get(k)));
    expect(second).toEqual(first);
  });

  it('builds shards in any order into the same files, one shard part each', async () => {
    await writeRun(mainRun);
    await buildDataset(out, stores, { runId: RUN });
    const inOrder = await out.get('runs/r1/dataset/stats.json');
    const manifest = await out.get('runs/r1/dataset/manifest.jsonl');
    await removeDataset();
    expect(await buildDatasetShard(out, stores, { runId: RUN, shard: 1 })).toEqual({
      shard: 1,
      images: 3,
      imagesFailed: 0,
      masks: 16,
      releaseImages: 0,
      reused: false,
    });
    await buildDatasetShard(out, stores, { runId: RUN, shard: 0 });
    await finishDataset(out, { runId: RUN });
    expect(await out.get('runs/r1/dataset/stats.json')).toEqual(inOrder);
    expect(await out.get('runs/r1/dataset/manifest.jsonl')).toEqual(manifest);
    expect(await keysUnder(out, 'runs/r1/dataset/shards/')).toEqual([
      'runs/r1/dataset/shards/000000.failed.jsonl',
      'runs/r1/dataset/shards/000000.manifest.jsonl',
      'runs/r1/dataset/shards/000000.summary.json',
      'runs/r1/dataset/shards/000001.failed.jsonl',
      'runs/r1/dataset/shards/000001.manifest.jsonl',
      'runs/r1/dataset/shards/000001.summary.json',
    ]);
  });

  it('reuses a built shard (a retry redoes no image) unless its release settings differ', async () => {
    await writeRun(mainRun);
    await buildDatasetShard(out, stores, { runId: RUN, shard: 0 });
    // Were shard 0 read again, its missing masks file would fail the build.
    await out.delete('runs/r1/masks/0.json');
    expect(await buildDatasetShard(out, stores, { runId: RUN, shard: 0 })).toMatchObject({ reused: true });
    await expect(
      buildDatasetShard(out, stores, { runId: RUN, shard: 0, release: { shortestSide: 15 } }),
    ).rejects.toThrow(/masks\/0\.json/);
  });

  it("puts each image's stage-1 masks and their provenance on its manifest (or failed) line", async () => {
    await writeRun(mainRun);
    // Round 1 annotated images 0 and 4, round 2 image 4 again and image 1 (stage 3 failed on it).
    await writeRoundProvenance(
      out,
      RUN,
      1,
      [annotation(1, 0, 'ann-a', 'a'), annotation(1, 4, 'ann-b', 'b')],
      3,
    );
    await writeRoundProvenance(
      out,
      RUN,
      2,
      [annotation(2, 4, 'ann-a', 'c'), annotation(2, 1, 'ann-b', 'd')],
      3,
    );
    await buildDataset(out, stores, { runId: RUN });
    const manifest = (await readLines('runs/r1/dataset/manifest.jsonl')) as ManifestLine[];
    const byId = new Map(manifest.map((line) => [line.id, line]));
    expect(byId.get(0)!.annotated).toEqual([
      {
        stage: 'stage1',
        round: 1,
        annotator: 'ann-a',
        model: 'sae-ref@4',
        seconds: 12.5,
        clicks: 3,
        annotation: 'runs/r1/stage1/round-1/annotations/0/a.json',
      },
    ]);
    expect(byId.get(4)!.annotated!.map((m) => [m.round, m.annotator])).toEqual([
      [1, 'ann-b'],
      [2, 'ann-a'],
    ]);
    expect(byId.get(2)!.annotated).toBeUndefined();
    const [failed] = (await readLines('runs/r1/dataset/failed.jsonl')) as FailedLine[];
    expect(failed!.annotated!.map((m) => m.round)).toEqual([2]);
  });

  it('rebuilds a shard whose images got stage-1 masks after it was built', async () => {
    await writeRun(mainRun);
    await buildDatasetShard(out, stores, { runId: RUN, shard: 0 });
    await writeRoundProvenance(out, RUN, 1, [annotation(1, 2, 'ann-a', 'a')], 3);
    expect(await buildDatasetShard(out, stores, { runId: RUN, shard: 0 })).toMatchObject({ reused: false });
    expect(await buildDatasetShard(out, stores, { runId: RUN, shard: 0 })).toMatchObject({ reused: true });
  });

  it('names the file and line of a provenance line it cannot read', async () => {
    await writeRun(mainRun);
    await out.put(runLayout.stage1Provenance(RUN, 1, 1), '{"id": 4, "annotated": [{"stage": "stage9"}]}\n');
    await expect(buildDatasetShard(out, stores, { runId: RUN, shard: 1 })).rejects.toThrow(
      /provenance\/000001\/round-1\.jsonl line 1 is not a provenance line/,
    );
  });

  it('refuses to finish while a shard is not built, or built with other release settings', async () => {
    await writeRun(mainRun);
    await buildDatasetShard(out, stores, { runId: RUN, shard: 0 });
    await expect(finishDataset(out, { runId: RUN })).rejects.toThrow(
      /dataset shard 1 of run r1 has not been built .*000001\.summary\.json/,
    );
    await buildDatasetShard(out, stores, { runId: RUN, shard: 1 });
    await expect(finishDataset(out, { runId: RUN, release: { shortestSide: 15 } })).rejects.toThrow(
      /dataset shard 0 of run r1 was built with release copies null, not \{"shortestSide":15\}/,
    );
    expect(await out.exists('runs/r1/dataset/manifest.jsonl')).toBe(false);
  });

  it('handles a run with no images', async () => {
    await writeRun([]);
    const summary = await buildDataset(out, stores, { runId: RUN });
    expect(summary).toMatchObject({ images: 0, imagesFailed: 0, masks: 0 });
    expect((await out.get('runs/r1/dataset/manifest.jsonl')).length).toBe(0);
    const stats = await readJson<DatasetStats>('runs/r1/dataset/stats.json');
    expect(stats.masksPerImage).toMatchObject({ mean: null, median: null, min: null, max: null });
    expect(stats.maskSize.meanRelativeSize).toBeNull();
  });

  it('takes the median of an even number of images as the mean of the middle two', async () => {
    const masks = (n: number) => Array.from({ length: n }, () => pixel(2, 2, 0, 0));
    await writeRun([
      [
        { id: 0, w: 2, h: 2, ms: 1, masks: masks(1) },
        { id: 1, w: 2, h: 2, ms: 1, masks: masks(2) },
        { id: 2, w: 2, h: 2, ms: 1, masks: masks(5) },
        { id: 3, w: 2, h: 2, ms: 1, masks: masks(9) },
      ],
    ]);
    await buildDataset(out, stores, { runId: RUN });
    const stats = await readJson<DatasetStats>('runs/r1/dataset/stats.json');
    expect(stats.masksPerImage).toMatchObject({ mean: 17 / 4, median: 3.5, min: 1, max: 9 });
  });
});

describe('buildDataset on a broken run', () => {
  it('names the key of a masks file that a result line references but that is missing', async () => {
    await writeRun(mainRun);
    await out.delete('runs/r1/masks/2.json');
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(
      /masks file "runs\/r1\/masks\/2\.json" of image 2 .* is missing/,
    );
  });

  it('refuses a run without a plan', async () => {
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(/run r1 has no stage-3 plan/);
  });

  it('refuses a run whose shard has not finished', async () => {
    await writeRun(mainRun);
    await out.delete(runLayout.shardResult(RUN, 1));
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(
      /shard 1 of run r1 has no result manifest .*000001\.result\.jsonl/,
    );
  });

  it('refuses a masks file that disagrees with its result line', async () => {
    await writeRun(mainRun);
    await out.put('runs/r1/masks/0.json', JSON.stringify(sa1bFile(0, 20, 10, [pixel(20, 10, 0, 0)])));
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(
      /masks\/0\.json: 1 annotations, the result line says 3/,
    );
  });

  it('refuses a masks file with a broken RLE, naming the file and the annotation', async () => {
    await writeRun(mainRun);
    const file = sa1bFile(0, 20, 10, image0.masks!);
    file.annotations[1]!.segmentation.counts = '0'; // one run of 0 pixels for a 200-pixel mask
    await out.put('runs/r1/masks/0.json', JSON.stringify(file));
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(
      /masks\/0\.json: annotation 1 has a bad RLE/,
    );
  });

  it('refuses a masks file that is not SA-1B JSON', async () => {
    await writeRun(mainRun);
    await out.put('runs/r1/masks/4.json', '{"image": {}}');
    await expect(buildDataset(out, stores, { runId: RUN })).rejects.toThrow(
      /masks\/4\.json: not an SA-1B image file/,
    );
  });

  it('refuses a release size that is not a positive integer', async () => {
    await writeRun(mainRun);
    await expect(buildDataset(out, stores, { runId: RUN, release: { shortestSide: 0 } })).rejects.toThrow(
      RangeError,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Release copies
// ---------------------------------------------------------------------------------------------

const RED = [255, 0, 0];
const BLUE = [0, 0, 255];

/** A w×h RGB image whose left half is red and right half blue. */
function halves(w: number, h: number): Buffer {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) data.set(x < w / 2 ? RED : BLUE, (y * w + x) * 3);
  }
  return data;
}

/** The RGB of pixel (x, y) of a decoded image. */
function rgbAt(image: { data: Uint8Array; width: number }, x: number, y: number): number[] {
  const i = (y * image.width + x) * 3;
  return [...image.data.subarray(i, i + 3)];
}

function expectColour(actual: number[], expected: number[]): void {
  actual.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(40));
}

describe('release copies', () => {
  /**
   * Image 0: 40×30 JPEG (landscape, shrinks by ½ to 20×15).
   * Image 1: stored 40×30 with EXIF orientation 6 (90° clockwise), so 30×40 upright → 15×20.
   * Image 2: 12×10 PNG, smaller than the release size: re-encoded as JPEG at 12×10.
   */
  async function writeReleaseRun(): Promise<void> {
    const raw = { raw: { width: 40, height: 30, channels: 3 as const } };
    await out.put('images/0.png', await sharp(halves(40, 30), raw).jpeg().toBuffer());
    await out.put(
      'images/1.png',
      await sharp(halves(40, 30), raw).jpeg().withMetadata({ orientation: 6 }).toBuffer(),
    );
    await out.put(
      'images/2.png',
      await sharp(halves(12, 10), { raw: { width: 12, height: 10, channels: 3 } })
        .png()
        .toBuffer(),
    );
    await writeRun([
      [
        { id: 0, w: 40, h: 30, ms: 1, masks: [pixel(40, 30, 0, 0)] },
        { id: 1, w: 30, h: 40, ms: 1, masks: [pixel(30, 40, 0, 0)] },
        { id: 2, w: 12, h: 10, ms: 1, masks: [pixel(12, 10, 0, 0)] },
      ],
    ]);
  }

  async function release(id: number) {
    return loadImage(await out.get(`runs/r1/dataset/images/${id}.jpg`));
  }

  it('downscales to the shortest side, applies EXIF orientation and never upscales', async () => {
    await writeReleaseRun();
    const summary = await buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } });
    expect(summary.releaseImages).toBe(3);

    const [landscape, rotated, small] = await Promise.all([release(0), release(1), release(2)]);
    expect([landscape.width, landscape.height, landscape.header.format]).toEqual([20, 15, 'jpeg']);
    expectColour(rgbAt(landscape, 2, 7), RED);
    expectColour(rgbAt(landscape, 17, 7), BLUE);

    // Orientation 6 turns the stored left half (red) into the top half, and the copy is upright.
    expect([rotated.width, rotated.height, rotated.header.orientation]).toEqual([15, 20, 1]);
    expectColour(rgbAt(rotated, 7, 2), RED);
    expectColour(rgbAt(rotated, 7, 17), BLUE);

    expect([small.width, small.height, small.header.format]).toEqual([12, 10, 'jpeg']);
  });

  it('records the scale per image in the manifest and the masks resolution in the stats', async () => {
    await writeReleaseRun();
    await buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } });
    const lines = (await readLines('runs/r1/dataset/manifest.jsonl')) as Array<Record<string, unknown>>;
    expect(lines.map((l) => [l.id, l.releaseImage, l.releaseScale])).toEqual([
      [0, 'runs/r1/dataset/images/0.jpg', 0.5],
      [1, 'runs/r1/dataset/images/1.jpg', 0.5],
      [2, 'runs/r1/dataset/images/2.jpg', 1],
    ]);
    const stats = await readJson<DatasetStats>('runs/r1/dataset/stats.json');
    expect(stats.release).toMatchObject({ shortestSide: 15, images: 3, maskResolution: 'original' });
  });

  it('writes identical release bytes when run twice', async () => {
    await writeReleaseRun();
    await buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } });
    const first = await out.get('runs/r1/dataset/images/1.jpg');
    await buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } });
    expect(await out.get('runs/r1/dataset/images/1.jpg')).toEqual(first);
  });

  it('refuses an image whose size no longer matches its masks', async () => {
    await writeReleaseRun();
    await out.put(
      'images/2.png',
      await sharp(halves(8, 8), { raw: { width: 8, height: 8, channels: 3 } })
        .png()
        .toBuffer(),
    );
    await expect(buildDataset(out, stores, { runId: RUN, release: { shortestSide: 15 } })).rejects.toThrow(
      /2\.png is 8×8 now, but its masks are 12×10/,
    );
  });

  it('computes release sizes: shortest side exact, long side rounded, nothing upscaled', () => {
    expect(releaseSize(4950, 3300, 1500)).toEqual({ width: 2250, height: 1500, scale: 1500 / 3300 });
    expect(releaseSize(3300, 4950, 1500)).toEqual({ width: 1500, height: 2250, scale: 1500 / 3300 });
    expect(releaseSize(2000, 2000, 1500)).toEqual({ width: 1500, height: 1500, scale: 0.75 });
    expect(releaseSize(3001, 2000, 1500)).toEqual({ width: 2251, height: 1500, scale: 0.75 }); // 2250.75 rounds up
    expect(releaseSize(1500, 4000, 1500)).toEqual({ width: 1500, height: 4000, scale: 1 });
    expect(releaseSize(640, 480, 1500)).toEqual({ width: 640, height: 480, scale: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// Moments and centres straight from the runs
// ---------------------------------------------------------------------------------------------

/** Area and pixel sums the slow way: decode the mask and visit every pixel. */
function decodedMoments(mask: Uint8Array, w: number) {
  let area = 0;
  let sumX = 0;
  let sumY = 0;
  mask.forEach((on, i) => {
    if (!on) return;
    area += 1;
    sumX += i % w;
    sumY += Math.floor(i / w);
  });
  return { area, sumX, sumY };
}

describe('maskMoments', () => {
  it('agrees with the decoded mask for random masks of many shapes', () => {
    const rand = prng(5);
    for (let trial = 0; trial < 300; trial++) {
      const h = 1 + Math.floor(rand() * 40);
      const w = 1 + Math.floor(rand() * 40);
      const density = [0, 0.05, 0.5, 0.95, 1][trial % 5]!;
      const mask = Uint8Array.from({ length: h * w }, () => (rand() < density ? 1 : 0));
      const rle = encodeMask(mask, h, w);
      expect(maskMoments(rle)).toEqual(decodedMoments(decodeRle(rle), w));
    }
  });

  it('handles runs that span whole columns', () => {
    // 3 rows × 4 columns; columns 1 and 2 fully on, plus the last pixel of column 0 and the first
    // of column 3: one run of 8 pixels starting at position 2.
    const rle = { size: [3, 4] as [number, number], counts: [2, 8, 2] };
    // x: 0 + 3·1 + 3·2 + 3 = 12; y: 2 + (0+1+2)·2 + 0 = 8.
    expect(maskMoments(rle)).toEqual({ area: 8, sumX: 12, sumY: 8 });
  });
});

describe('centroidCell', () => {
  it('puts the centre of a pixel in the grid cell that contains it', () => {
    // 1 pixel at (x, y) in a 64×64 image: centre (x + ½, y + ½), cell floor(centre / 2).
    expect(centroidCell({ area: 1, sumX: 0, sumY: 63 }, 64, 64, 32)).toEqual({ row: 31, column: 0 });
    expect(centroidCell({ area: 1, sumX: 3, sumY: 4 }, 64, 64, 32)).toEqual({ row: 2, column: 1 });
  });

  it('puts a centre exactly on an edge in the cell to its right and below', () => {
    // Two pixels x = 1 and 2 of a 6×1 image: centre (2, ½); x = 2 = 6/3 is the left edge of column 1.
    expect(centroidCell({ area: 2, sumX: 3, sumY: 0 }, 6, 1, 3)).toEqual({ row: 1, column: 1 });
  });

  it('has no cell for an empty mask', () => {
    expect(centroidCell({ area: 0, sumX: 0, sumY: 0 }, 10, 10, 32)).toBeUndefined();
  });
});

describe('LineSpool', () => {
  it('stores small files with one put and big ones streamed, every line intact', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'sae-spool-'));
    try {
      for (const lines of [0, 3, 150_000]) {
        const spool = await LineSpool.create(dir, `${lines}.jsonl`);
        for (let id = 0; id < lines; id++)
          await spool.push({ id, image: `file:///images/${id}.jpg`, pad: 'x'.repeat(80) });
        await spool.upload(out, `spool/${lines}.jsonl`);
        const text = (await out.get(`spool/${lines}.jsonl`)).toString('utf8');
        const stored = text === '' ? [] : text.trimEnd().split('\n');
        expect(stored.length).toBe(lines);
        if (lines === 150_000) expect(text.length).toBeGreaterThan(16 << 20); // the streamed path
        if (lines > 0) expect(JSON.parse(stored.at(-1)!)).toMatchObject({ id: lines - 1 });
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
