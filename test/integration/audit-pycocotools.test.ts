// The audit (lib/audit/) against an independent recomputation in Python: label images read with
// Pillow, masks compared with pycocotools' maskUtils.iou, figures with numpy
// (test/python/audit_oracle.py). The run's outputs live in the dev stack's S3 server.
//
// Python: $SAE_PYTHON, else trainer/.venv/bin/python (pycocotools, numpy, pillow; installed by
// infra/install-python.sh). Real photos: $SAE_REAL_DATA/grabcut (images/* and gt/*.bmp: 255 object,
// 0 background, 128 unlabelled band) and $SAE_REAL_DATA/format_samples/labelme_coco (polygons).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAudit, type AuditReport } from '../../lib/audit/audit.ts';
import { readAutomaticMasks } from '../../lib/audit/automatic.ts';
import { matchImage } from '../../lib/audit/match.ts';
import { rleFromPolygons } from '../../lib/audit/polygon.ts';
import { loadHumanMasks, openReference } from '../../lib/audit/reference.ts';
import { drawAuditSample } from '../../lib/audit/sample.ts';
import { loadImage } from '../../lib/images/image-io.ts';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import type { AuditConfig } from '../../lib/run-config.ts';
import { compressRle } from '../../lib/rle.ts';
import { Random } from '../../lib/synth/random.ts';
import { askOracle as runOracle, requireProjectPython } from '../helpers/python-oracle.ts';
import { storeOptionsFor, testStack, uniqueTestPrefix } from '../helpers/stack.ts';
import { buildAuditFixture, writeFinishedStage3, type FixtureImage } from '../unit/audit-fixture.ts';

const realData = process.env.SAE_REAL_DATA;

const { s3 } = testStack();
const s3Options = storeOptionsFor(testStack()).s3!;
const prefix = uniqueTestPrefix('audit-test');
const out = openObjectStore(`s3://${s3.bucket}/${prefix}`, { s3: s3Options });
const stores = new StoreCache({ s3: s3Options });

beforeAll(() => requireProjectPython('pycocotools, numpy, pillow'));

afterAll(async () => {
  for await (const key of out.listKeys()) await out.delete(key);
  await out.close();
  await stores.close();
});

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

interface OracleImage {
  label_path: string;
  ignore_value: number | null;
  masks_json: string;
}

interface OracleAnswer {
  images: Array<{ labels: number[]; iou: number[][] }>;
  figures: {
    humanMasks: number;
    meanIou: number;
    shareAbove090: number;
    shareAbove075: number;
    histogram: number[];
    recall: { at050: number; at075: number; at090: number };
    precision: number | null;
    bySizeCount: Record<'small' | 'medium' | 'large', number>;
    bySizeMeanIou: Record<'small' | 'medium' | 'large', number | null>;
  } | null;
  polygons: string[];
}

function askOracle(request: {
  images?: OracleImage[];
  polygons?: Array<{ h: number; w: number; polygons: number[][] }>;
}): OracleAnswer {
  return runOracle<OracleAnswer>('audit_oracle.py', request);
}

/**
 * Audits the run, asks the oracle about the same images, and checks both the per-image IoU
 * matrices (exactly: both divide the same two integers) and the headline figures.
 */
async function auditAgainstOracle(
  runStore: ObjectStore,
  runId: string,
  audit: AuditConfig,
  labelPath: (imageUri: string) => string,
) {
  const summary = await runAudit(runStore, stores, { runId, audit });
  const report = JSON.parse((await runStore.get(summary.reportJsonKey)).toString('utf8')) as AuditReport;

  const reference = await openReference(stores, audit.reference!);
  const every = Number.MAX_SAFE_INTEGER; // a sample of every image with human masks
  const isCandidate = (line: { key: string }) => reference.find(line.key) !== undefined;
  const lines = (await drawAuditSample(runStore, runId, isCandidate, every, 0)).sample;
  const ours: number[][][] = [];
  const request: OracleImage[] = [];
  const entries = await reference.entries(lines);
  for (const [i, line] of lines.entries()) {
    const [human, autos] = await Promise.all([
      loadHumanMasks(stores, entries[i]!, line),
      readAutomaticMasks(runStore, line),
    ]);
    ours.push(
      matchImage(
        human.masks.map((m) => m.rle),
        autos,
        human.ignore,
      ).iou,
    );
    request.push({
      label_path: labelPath(line.key),
      ignore_value: audit.reference!.ignoreValue,
      masks_json: (await runStore.get(line.masks)).toString('utf8'),
    });
  }
  const oracle = askOracle({ images: request });
  expect(oracle.images).toHaveLength(lines.length);
  oracle.images.forEach((image, i) => expect(ours[i]).toEqual(image.iou));

  const f = report.figures;
  const o = oracle.figures!;
  expect(report.sample.audited).toBe(lines.length); // the sample covers every candidate here
  expect(f.overall.humanMasks).toBe(o.humanMasks);
  expect(f.overall.meanIou).toBeCloseTo(o.meanIou, 12);
  expect(f.overall.shareAbove090).toBeCloseTo(o.shareAbove090, 12);
  expect(f.overall.shareAbove075).toBeCloseTo(o.shareAbove075, 12);
  expect(f.overall.histogram.map((b) => b.count)).toEqual(o.histogram);
  expect(f.overall.recall.at050).toBeCloseTo(o.recall.at050, 12);
  expect(f.overall.recall.at075).toBeCloseTo(o.recall.at075, 12);
  expect(f.overall.recall.at090).toBeCloseTo(o.recall.at090, 12);
  expect(f.precision.precisionAt050).toBeCloseTo(o.precision!, 12);
  for (const cls of ['small', 'medium', 'large'] as const) {
    expect(f.bySize[cls].humanMasks).toBe(o.bySizeCount[cls]);
    if (o.bySizeMeanIou[cls] === null) expect(f.bySize[cls].meanIou).toBeNull();
    else expect(f.bySize[cls].meanIou).toBeCloseTo(o.bySizeMeanIou[cls]!, 12);
  }
  return { summary, report, oracle };
}

// ---------------------------------------------------------------------------------------------
// Synthetic run
// ---------------------------------------------------------------------------------------------

/** Twelve images of random boxes with every kind of perturbation; half have an ignore band. */
function syntheticImages(): FixtureImage[] {
  const random = new Random(11);
  const kinds = ['same', 'shift', 'dilate', 'erode', 'missing'] as const;
  return Array.from({ length: 12 }, (_, i) => {
    const w = 180 + 20 * (i % 3);
    const h = 140;
    const objects = [0, 1, 2].map((k) => {
      const size = [8, 30, 110][k]!; // small, medium and large masks
      const rect = {
        x: k * 60 + random.int(0, 4),
        y: random.int(0, h - Math.min(size, 120) - 4),
        w: Math.min(size, 55),
        h: Math.min(size, 120),
      };
      const kind = random.pick(kinds);
      const amount = random.int(1, 4);
      const auto =
        kind === 'shift'
          ? { kind, dx: amount, dy: random.int(-2, 2) }
          : kind === 'dilate' || kind === 'erode'
            ? { kind, k: Math.min(amount, 2) }
            : { kind };
      return { rect, auto };
    });
    return {
      name: `syn-${i}.jpg`,
      w,
      h,
      objects,
      ignoreBand: i % 2 === 0 ? 2 : 0,
      extraAuto: i % 3 === 0 ? [{ x: w - 20, y: 5, w: 12, h: 12 }] : [],
      failed: i === 5,
    };
  });
}

describe('the audit agrees with pycocotools', () => {
  it('on a synthetic run stored in S3 (IoU matrices exactly, figures to 1e-12)', async () => {
    const images = syntheticImages();
    const fixture = await buildAuditFixture(images, { out, stores, runId: 'syn', shardSize: 5 });
    try {
      const { summary } = await auditAgainstOracle(out, 'syn', fixture.pngAudit, (uri) =>
        path.join(fixture.gtDir, path.basename(uri).replace(/\.jpg$/, '.png')),
      );
      expect(summary.imagesAudited).toBe(11);
    } finally {
      await fixture.cleanup();
    }
  });

  it('rasterises COCO polygons exactly as frPyObjects + merge', () => {
    const random = new Random(3);
    const cases = Array.from({ length: 60 }, () => {
      const h = random.int(5, 80);
      const w = random.int(5, 80);
      // Random (often self-intersecting) polygons, some reaching outside the image.
      const polygons = Array.from({ length: random.int(1, 3) }, () =>
        Array.from({ length: 2 * random.int(3, 9) }, (_, j) => random.uniform(-5, (j % 2 === 0 ? w : h) + 5)),
      );
      return { h, w, polygons };
    });
    const oracle = askOracle({ polygons: cases });
    cases.forEach((c, i) =>
      expect(compressRle(rleFromPolygons(c.polygons, c.h, c.w)).counts).toBe(oracle.polygons[i]),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Real photos
// ---------------------------------------------------------------------------------------------

describe.skipIf(!realData)('on real data (set SAE_REAL_DATA to the shared data folder to run)', () => {
  it('GrabCut: 50 photos, human masks with an ignore band, automatic masks perturbed from them', async () => {
    const grabcut = path.join(realData!, 'grabcut');
    const gtDir = path.join(grabcut, 'gt');
    const photos = readdirSync(path.join(grabcut, 'images')).sort();
    const entries = [];
    for (const [i, name] of photos.entries()) {
      const gt = path.join(gtDir, `${name.slice(0, name.lastIndexOf('.'))}.bmp`);
      const labels = await loadImage(readFileSync(gt), { name: gt });
      entries.push({
        uri: pathToFileURL(path.join(grabcut, 'images', name)).href,
        w: labels.width,
        h: labels.height,
        autos: perturbGrabCut(labels.data, labels.width, labels.height, i),
      });
    }
    const runId = 'grabcut';
    await writeFinishedStage3(out, runId, entries, 16);
    const audit: AuditConfig = {
      enabled: true,
      reference: { uri: pathToFileURL(gtDir).href + '/', format: 'png', ignoreValue: 128 },
      sampleSize: 500,
      seed: 0,
      gate: { minShareAbove090: null, minShareAbove075: null, minMeanIou: null },
    };
    const { summary, report } = await auditAgainstOracle(out, runId, audit, (uri) => {
      const name = path.basename(fileURLToPath(uri));
      return path.join(gtDir, `${name.slice(0, name.lastIndexOf('.'))}.bmp`);
    });
    expect(summary.imagesAudited).toBe(50);
    expect(summary.humanMasks).toBe(50);
    expect(report.gallery).toHaveLength(8);
    expect(report.worst[0]!.meanBestIou).toBeLessThan(0.9);
  });

  it('labelme COCO polygons: the same pixels as pycocotools', () => {
    const file = path.join(realData!, 'format_samples/labelme_coco/data_dataset_coco/annotations.json');
    const coco = JSON.parse(readFileSync(file, 'utf8')) as {
      images: Array<{ id: number; width: number; height: number }>;
      annotations: Array<{ image_id: number; segmentation: number[][] }>;
    };
    const cases = coco.annotations.map((a) => {
      const image = coco.images.find((im) => im.id === a.image_id)!;
      return { h: image.height, w: image.width, polygons: a.segmentation };
    });
    const oracle = askOracle({ polygons: cases });
    expect(cases.length).toBeGreaterThan(0);
    cases.forEach((c, i) =>
      expect(compressRle(rleFromPolygons(c.polygons, c.h, c.w)).counts).toBe(oracle.polygons[i]),
    );
  });
});

/**
 * Automatic masks for GrabCut image i, from its object (255) and band (128): the object with its
 * band (IoU 1 once the band is ignored), shifted right, or grown/shrunk by a few pixels; every
 * third image also gets an unrelated box.
 */
function perturbGrabCut(rgb: Uint8Array, w: number, h: number, i: number): Uint8Array[] {
  const object = new Uint8Array(w * h);
  const band = new Uint8Array(w * h);
  for (let p = 0; p < w * h; p++) {
    object[p] = rgb[p * 3] === 255 ? 1 : 0;
    band[p] = rgb[p * 3] === 128 ? 1 : 0;
  }
  const variants = [
    () => object.map((v, p) => v | band[p]!),
    () => shift(object, w, h, 3 + (i % 5)),
    () => grow(object, w, h, 2 + (i % 3)),
    () => invert(grow(invert(object), w, h, 4)), // eroded by 4 px
  ];
  const masks = [variants[i % variants.length]!()];
  if (i % 3 === 0) masks.push(box(w, h));
  return masks;
}

function shift(mask: Uint8Array, w: number, h: number, dx: number): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = dx; x < w; x++) out[y * w + x] = mask[y * w + x - dx]!;
  return out;
}

/** Dilation by a (2r+1)² square. */
function grow(mask: Uint8Array, w: number, h: number, r: number): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      for (let yy = Math.max(0, y - r); yy <= Math.min(h - 1, y + r); yy++)
        out.fill(1, yy * w + Math.max(0, x - r), yy * w + Math.min(w - 1, x + r) + 1);
    }
  }
  return out;
}

function invert(mask: Uint8Array): Uint8Array {
  return mask.map((v) => 1 - v);
}

function box(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < Math.floor(h / 4); y++) out.fill(1, y * w, y * w + Math.floor(w / 4));
  return out;
}
