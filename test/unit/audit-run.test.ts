// runAudit end to end on a file:// run built by ./audit-fixture.ts: automatic masks are the human
// masks shifted, dilated, eroded or dropped, so every IoU is known before the audit runs.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import {
  auditChunk,
  AuditGateError,
  AuditInputError,
  drawSample,
  finishAudit,
  runAudit,
  type AuditReport,
  type AuditRow,
} from '../../lib/audit/audit.ts';
import { openReference } from '../../lib/audit/reference.ts';
import type { ObjectStore } from '../../lib/object-store.ts';
import { decompressRle } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import {
  buildAuditFixture,
  expectedBestIous,
  snapshot,
  type AuditFixture,
  type FixtureImage,
} from './audit-fixture.ts';

const W = 200;
const H = 150;

/** Six images: exact, shifted, eroded, dilated, missing and extra masks, a failure, an ignore band. */
function scenario(): FixtureImage[] {
  return [
    {
      name: 'img-000.jpg',
      w: W,
      h: H,
      objects: [
        { rect: { x: 20, y: 20, w: 40, h: 30 }, auto: { kind: 'same' } }, // IoU 1
        { rect: { x: 100, y: 40, w: 20, h: 20 }, auto: { kind: 'shift', dx: 2 } }, // 18/22
        { rect: { x: 150, y: 100, w: 10, h: 10 }, auto: { kind: 'erode', k: 1 } }, // 64/100
      ],
    },
    {
      name: 'img-001.jpg',
      w: W,
      h: H,
      objects: [
        { rect: { x: 10, y: 10, w: 120, h: 100 }, auto: { kind: 'dilate', k: 2 } }, // 12000/12896
        { rect: { x: 160, y: 20, w: 30, h: 30 }, auto: { kind: 'missing' } }, // 0
      ],
      extraAuto: [{ x: 150, y: 120, w: 20, h: 20 }],
    },
    {
      name: 'img-002.jpg',
      w: W,
      h: H,
      objects: [{ rect: { x: 5, y: 5, w: 9, h: 9 }, auto: { kind: 'same' } }],
      failed: true,
    },
    {
      name: 'img-003.jpg',
      w: W,
      h: H,
      objects: [{ rect: { x: 5, y: 5, w: 9, h: 9 }, auto: { kind: 'same' } }],
      noReference: true,
    },
    {
      name: 'img-004.jpg',
      w: W,
      h: H,
      ignoreBand: 3,
      objects: [
        { rect: { x: 30, y: 30, w: 50, h: 40 }, auto: { kind: 'same' } }, // 1 once the band is ignored
        { rect: { x: 110, y: 60, w: 40, h: 40 }, auto: { kind: 'shift', dx: 4 } },
      ],
    },
    {
      name: 'img-005.png',
      w: W,
      h: H,
      objects: [{ rect: { x: 50, y: 50, w: 60, h: 60 }, auto: { kind: 'shift', dx: 10, dy: 10 } }],
    },
  ];
}

/** The images the audit should compare: segmented, with human masks. */
const audited = (images: FixtureImage[]) => images.filter((i) => !i.failed && !i.noReference);

let fixture: AuditFixture | undefined;
afterEach(async () => {
  await fixture?.cleanup();
  fixture = undefined;
});

/** A black grey-level PNG. */
function blankPng(w: number, h: number): Promise<Buffer> {
  return sharp(new Uint8Array(w * h), { raw: { width: w, height: h, channels: 1 } })
    .png()
    .toBuffer();
}

async function readJson<T>(out: ObjectStore, key: string): Promise<T> {
  return JSON.parse((await out.get(key)).toString('utf8')) as T;
}

async function readRows(out: ObjectStore, runId: string): Promise<AuditRow[]> {
  const text = (await out.get(runLayout.auditRows(runId))).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRow);
}

describe('runAudit with a folder of label images', () => {
  it('finds exactly the IoUs the perturbations imply, and writes report.json, rows.jsonl and report.html', async () => {
    const images = scenario();
    fixture = await buildAuditFixture(images);
    const progress: number[] = [];
    const summary = await runAudit(fixture.out, fixture.stores, {
      runId: fixture.runId,
      audit: fixture.pngAudit,
      onProgress: (p) => p.phase === 'matching' && progress.push(p.done),
    });

    const expected = audited(images).flatMap(expectedBestIous);
    const mean = expected.reduce((s, v) => s + v, 0) / expected.length;
    expect(summary.imagesAudited).toBe(4);
    expect(summary.humanMasks).toBe(expected.length);
    expect(summary.automaticMasks).toBe(3 + 2 + 2 + 1);
    expect(summary.meanIou).toBeCloseTo(mean, 12);
    expect(summary.shareAbove090).toBeCloseTo(expected.filter((v) => v > 0.9).length / expected.length, 12);
    expect(summary.shareAbove075).toBeCloseTo(expected.filter((v) => v > 0.75).length / expected.length, 12);
    expect(summary.runImagesWithoutReference).toBe(1); // img-003
    expect(summary.referenceImagesUnmatched).toBe(1); // gt/img-002.png: stage 3 failed on it
    expect(summary.gate).toEqual({ passed: true, failures: [] });
    expect(progress.sort((a, b) => a - b)).toEqual([1, 2, 3, 4]);

    const rows = await readRows(fixture.out, fixture.runId);
    expect(rows.map((r) => r.imageId)).toEqual([0, 1, 4, 5]);
    const byName = new Map(rows.map((r) => [path.basename(r.image), r]));
    const row0 = byName.get('img-000.jpg')!;
    expect(row0.worstIou).toBeCloseTo(64 / 100, 12);
    expect(row0.meanBestIou).toBeCloseTo((1 + 18 / 22 + 0.64) / 3, 12);
    expect(row0.worstHumanMask).toBe('value 215'); // the third object
    const row1 = byName.get('img-001.jpg')!;
    expect(row1.worstIou).toBe(0);
    expect(row1.worstAutoIndex).toBeNull();
    expect(row1.automaticMasks).toBe(2);
    expect(row1.matchedAt050).toBe(1);
    const row4 = byName.get('img-004.jpg')!;
    expect(row4.ignoredPixels).toBeGreaterThan(0);
    expect(Math.max(...expectedBestIous(images[4]!))).toBe(1); // the band is what separates them
    for (const row of rows) {
      const image = images.find((i) => i.name === path.basename(row.image))!;
      const ious = expectedBestIous(image);
      expect(row.meanBestIou).toBeCloseTo(ious.reduce((s, v) => s + v, 0) / ious.length, 12);
      expect(row.worstIou).toBeCloseTo(Math.min(...ious), 12);
    }

    const report = await readJson<AuditReport>(fixture.out, runLayout.auditReportJson(fixture.runId));
    expect(report.figures.overall.histogram).toHaveLength(20);
    expect(report.figures.overall.histogram.reduce((s, b) => s + b.count, 0)).toBe(expected.length);
    expect(report.figures.precision.meaningful).toBe(false);
    expect(report.figures.precision.matchedAt050).toBe(7); // every automatic mask except the extra one
    expect(report.figures.bySize.small.humanMasks).toBe(3); // 20², 10², 30² px
    expect(report.figures.bySize.large.humanMasks).toBe(1); // 120×100
    expect(report.worst[0]!.image).toMatch(/img-001\.jpg$/);
    expect(report.gallery).toHaveLength(4);
    expect(report.paper).toEqual({ shareAbove090: 0.94, shareAbove075: 0.97 });
    expect(report.notes.join(' ')).toMatch(/no human masks in the reference/);

    const html = (await fixture.out.get(summary.reportHtmlKey)).toString('utf8');
    expect(html).toContain('<svg');
    expect(html.match(/data:image\/jpeg;base64,/g)).toHaveLength(4);
    for (const g of report.gallery) expect(await fixture.out.exists(g.key)).toBe(true);
  });

  it('draws the same sample from the same seed, and writes the same bytes twice', async () => {
    fixture = await buildAuditFixture(scenario());
    const audit = { ...fixture.pngAudit, sampleSize: 2, seed: 7 };
    const opts = { runId: fixture.runId, audit };
    await runAudit(fixture.out, fixture.stores, opts);
    const first = await snapshot(fixture.out, 'nothing-excluded/');
    await runAudit(fixture.out, fixture.stores, opts);
    const second = await snapshot(fixture.out, 'nothing-excluded/');
    expect(second).toEqual(first);
    const rows = await readRows(fixture.out, fixture.runId);
    expect(rows).toHaveLength(2);

    // Every seed picks 2 of the 4 candidates; across seeds, more than one pair must show up.
    const pairs = new Set<string>();
    for (const seed of [0, 1, 2, 3, 4, 5]) {
      await runAudit(fixture.out, fixture.stores, { runId: fixture.runId, audit: { ...audit, seed } });
      pairs.add((await readRows(fixture.out, fixture.runId)).map((r) => r.imageId).join(','));
    }
    expect(pairs.size).toBeGreaterThan(1);
  });

  it('changes nothing outside runs/<run>/audit/, and cleans its own stale gallery pictures', async () => {
    fixture = await buildAuditFixture(scenario());
    const auditPrefix = runLayout.auditPrefix(fixture.runId);
    const before = await snapshot(fixture.out, auditPrefix);
    await runAudit(fixture.out, fixture.stores, {
      runId: fixture.runId,
      audit: fixture.pngAudit,
      galleryImages: 4,
    });
    await runAudit(fixture.out, fixture.stores, {
      runId: fixture.runId,
      audit: fixture.pngAudit,
      galleryImages: 2,
    });
    expect(await snapshot(fixture.out, auditPrefix)).toEqual(before);
    const gallery: string[] = [];
    for await (const key of fixture.out.listKeys(runLayout.auditGalleryPrefix(fixture.runId)))
      gallery.push(key);
    expect(gallery).toEqual([
      runLayout.auditGalleryImage(fixture.runId, 0),
      runLayout.auditGalleryImage(fixture.runId, 1),
    ]);
  });
});

describe('the audit in chunks (one auditChunk activity each)', () => {
  it('gives the same report whatever the chunk size, and a matched chunk is not matched again', async () => {
    fixture = await buildAuditFixture(scenario());
    const opts = { runId: fixture.runId, audit: fixture.pngAudit };
    const whole = await runAudit(fixture.out, fixture.stores, opts);
    const expected = await snapshot(fixture.out, runLayout.auditPrefix(fixture.runId));
    const reportOf = async () => ({
      json: (await fixture!.out.get(whole.reportJsonKey)).toString('utf8'),
      rows: (await fixture!.out.get(whole.rowsKey)).toString('utf8'),
    });
    const report = await reportOf();

    const chunked = { ...opts, chunkImages: 2 };
    const drawn = await drawSample(fixture.out, fixture.stores, chunked);
    expect(drawn).toEqual({ runId: fixture.runId, images: 4, chunks: 2 });
    // finish refuses a sample whose chunks are not all matched
    await expect(finishAudit(fixture.out, fixture.stores, chunked)).rejects.toThrow(
      /chunk 0 of run .*'s audit sample has not been matched.*run auditChunk first/,
    );
    expect(await auditChunk(fixture.out, fixture.stores, chunked, 0)).toEqual({
      chunk: 0,
      images: 2,
      reused: false,
    });
    expect(await auditChunk(fixture.out, fixture.stores, chunked, 1)).toEqual({
      chunk: 1,
      images: 2,
      reused: false,
    });
    // A retry, or the sample drawn again the same way: nothing is matched twice.
    await drawSample(fixture.out, fixture.stores, chunked);
    expect(await auditChunk(fixture.out, fixture.stores, chunked, 1)).toEqual({
      chunk: 1,
      images: 2,
      reused: true,
    });
    await finishAudit(fixture.out, fixture.stores, chunked);
    expect(await reportOf()).toEqual(report);
    // Drawn again in one chunk: the stale second chunk goes, and the files are those of one go.
    await runAudit(fixture.out, fixture.stores, opts);
    expect(await snapshot(fixture.out, runLayout.auditPrefix(fixture.runId))).toEqual(expected);
    const kept: string[] = [];
    for await (const key of fixture.out.listKeys(runLayout.auditSamplePrefix(fixture.runId))) kept.push(key);
    expect(kept).toEqual([runLayout.auditSampleChunk(fixture.runId, 0)]);
  });

  it('matches a chunk again when its input changed (another seed draws other images)', async () => {
    fixture = await buildAuditFixture(scenario());
    const opts = (seed: number) => ({
      runId: fixture!.runId,
      audit: { ...fixture!.pngAudit, sampleSize: 2, seed },
    });
    let first: number[] | undefined;
    for (const seed of [0, 1, 2, 3, 4, 5]) {
      await drawSample(fixture.out, fixture.stores, opts(seed));
      const result = await auditChunk(fixture.out, fixture.stores, opts(seed), 0);
      await finishAudit(fixture.out, fixture.stores, opts(seed));
      const ids = (await readRows(fixture.out, fixture.runId)).map((r) => r.imageId);
      first ??= ids;
      if (ids.join() !== first.join()) {
        expect(result.reused).toBe(false);
        return;
      }
    }
    throw new Error('every seed drew the same 2 images');
  });
});

describe('a COCO reference read as a stream', () => {
  it('keeps the annotations of the images asked for only, and names a malformed element', async () => {
    fixture = await buildAuditFixture(scenario().map((image) => ({ ...image, ignoreBand: undefined })));
    const reference = await openReference(fixture.stores, fixture.cocoAudit.reference!);
    const coco = JSON.parse(await readFile(fixture.cocoPath, 'utf8')) as {
      images: { id: number; file_name: string; width: number; height: number }[];
      annotations: { image_id: number }[];
    };
    const [asked] = coco.images;
    const entries = await reference.entries([{ key: `s3://b/${asked!.file_name}` }]);
    expect(entries).toHaveLength(1);
    const entry = entries[0]!;
    if (entry.format !== 'coco') throw new Error('expected a COCO entry');
    expect(entry.image).toEqual(asked);
    expect(entry.annotations.length).toBe(coco.annotations.filter((a) => a.image_id === asked!.id).length);
    expect(entry.annotations.length).toBeLessThan(coco.annotations.length);

    coco.images[1]!.width = -3;
    await writeFile(fixture.cocoPath, JSON.stringify(coco));
    const error = await openReference(fixture.stores, fixture.cocoAudit.reference!).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditInputError);
    expect((error as Error).message).toMatch(/coco\.json: not a COCO instances file: images\[1\]: .*width/s);
  });
});

describe('runAudit with a COCO reference', () => {
  /** COCO has no ignore value: the same scenario without the band. */
  const cocoScenario = () => scenario().map((image) => ({ ...image, ignoreBand: undefined }));

  it('matches images by file name and gives the same figures for RLE and polygon segmentations', async () => {
    const images = cocoScenario();
    const expected = audited(images).flatMap(expectedBestIous);
    const results = [];
    for (const cocoPolygons of [false, true]) {
      fixture = await buildAuditFixture(images, { cocoPolygons });
      const summary = await runAudit(fixture.out, fixture.stores, {
        runId: fixture.runId,
        audit: fixture.cocoAudit,
      });
      results.push(await readRows(fixture.out, fixture.runId));
      expect(summary.humanMasks).toBe(expected.length);
      expect(summary.meanIou).toBeCloseTo(expected.reduce((s, v) => s + v, 0) / expected.length, 12);
      expect(summary.referenceImagesUnmatched).toBe(1);
      await fixture.cleanup();
      fixture = undefined;
    }
    const strip = (rows: AuditRow[]) =>
      rows.map((r) => ({ ...r, image: path.basename(r.image), reference: '' }));
    expect(strip(results[1]!)).toEqual(strip(results[0]!));
    expect(results[0]![0]!.worstHumanMask).toBe('annotation 3');
  });

  it('reports precision as meaningful only for an exhaustive reference', async () => {
    fixture = await buildAuditFixture(cocoScenario());
    const summary = await runAudit(fixture.out, fixture.stores, {
      runId: fixture.runId,
      audit: fixture.cocoAudit,
      exhaustive: true,
    });
    const report = await readJson<AuditReport>(fixture.out, summary.reportJsonKey);
    expect(report.figures.precision.meaningful).toBe(true);
    expect(report.figures.precision.precisionAt050).toBeCloseTo(7 / 8, 12);
    expect(report.reference.exhaustive).toBe(true);
  });
});

describe('COCO annotation forms', () => {
  it('reads uncompressed RLE, and leaves out crowd and empty annotations', async () => {
    fixture = await buildAuditFixture(scenario().map((image) => ({ ...image, ignoreBand: undefined })));
    const coco = JSON.parse(await readFile(fixture.cocoPath, 'utf8'));
    const first = coco.annotations[0];
    first.segmentation = decompressRle(first.segmentation); // counts as a list of numbers
    const empty = { size: first.segmentation.size, counts: [W * H] };
    coco.annotations.push(
      { ...coco.annotations[1], id: 900, iscrowd: 1 },
      { ...coco.annotations[1], id: 901, segmentation: empty },
    );
    await writeFile(fixture.cocoPath, JSON.stringify(coco));
    const summary = await runAudit(fixture.out, fixture.stores, {
      runId: fixture.runId,
      audit: fixture.cocoAudit,
    });
    const report = await readJson<AuditReport>(fixture.out, summary.reportJsonKey);
    expect(report.masks.skippedCrowd).toBe(1);
    expect(report.masks.skippedEmpty).toBe(1);
    expect(summary.humanMasks).toBe(audited(scenario()).reduce((n, i) => n + i.objects.length, 0));
    expect((await readRows(fixture.out, fixture.runId))[0]!.worstIou).toBeCloseTo(0.64, 12);
  });

  it('names an annotation whose RLE has another size than its image', async () => {
    fixture = await buildAuditFixture(scenario());
    const coco = JSON.parse(await readFile(fixture.cocoPath, 'utf8'));
    coco.annotations[2].segmentation.size = [H, W + 1];
    await writeFile(fixture.cocoPath, JSON.stringify(coco));
    const error = await runAudit(fixture.out, fixture.stores, {
      runId: fixture.runId,
      audit: fixture.cocoAudit,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditInputError);
    expect((error as Error).message).toBe(
      `${fixture.cocoUri}: annotation 3 of image 100 ("photos/img-000.jpg"): its RLE is ${W + 1}×${H} (w×h), ` +
        `expected ${W}×${H} (w×h) like its image`,
    );
  });
});

describe('the gate', () => {
  it('fails with the figures in the messages, and the report is still written', async () => {
    fixture = await buildAuditFixture(scenario());
    const audit = {
      ...fixture.pngAudit,
      gate: { minShareAbove090: 0.94, minShareAbove075: 0.1, minMeanIou: 0.99 },
    };
    const summary = await runAudit(fixture.out, fixture.stores, { runId: fixture.runId, audit });
    expect(summary.gate.passed).toBe(false);
    expect(summary.gate.failures).toHaveLength(2);
    expect(summary.gate.failures[0]).toMatch(/^share of IoU > 0\.90 is \d+\.\d%, below the gate 94\.0%$/);
    expect(summary.gate.failures[1]).toMatch(/^mean IoU is 0\.\d{3}, below the gate 0\.990$/);
    expect(await fixture.out.exists(summary.reportHtmlKey)).toBe(true);
    const error = new AuditGateError(summary.gate.failures, summary.reportHtmlKey);
    expect(error.message).toContain('share of IoU > 0.90 is');
    expect(error.message).toContain(summary.reportHtmlKey);
  });
});

describe('bad input', () => {
  async function auditError(f: AuditFixture, audit = f.pngAudit): Promise<AuditInputError> {
    const error = await runAudit(f.out, f.stores, { runId: f.runId, audit }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditInputError);
    return error as AuditInputError;
  }

  it('refuses a reference whose images match none of the run, naming both sides', async () => {
    fixture = await buildAuditFixture(scenario());
    const otherDir = path.join(fixture.root, 'other-gt');
    await mkdir(otherDir);
    await writeFile(path.join(otherDir, 'holiday.png'), await blankPng(W, H));
    const uri = `file://${otherDir}/`;
    const error = await auditError(fixture, {
      ...fixture.pngAudit,
      reference: { uri, format: 'png', ignoreValue: null },
    });
    expect(error.file).toBe(uri);
    expect(error.message).toMatch(
      /none of the reference's 1 images \(e\.g\. "holiday\.png"\) matches one of the run's 5 segmented images \(e\.g\. "img-000\.jpg"/,
    );
  });

  it('says which mask has the wrong size, with the expected and the actual size', async () => {
    fixture = await buildAuditFixture(scenario());
    const file = path.join(fixture.gtDir, 'img-001.png');
    await writeFile(file, await blankPng(W - 1, H));
    const error = await auditError(fixture);
    expect(error.file).toBe(`file://${file}`);
    expect(error.message).toContain(
      `the mask is ${W - 1}×${H} (w×h), expected ${W}×${H} (w×h) like the run's image`,
    );
  });

  it('names an empty (0-byte) mask file', async () => {
    fixture = await buildAuditFixture(scenario());
    const file = path.join(fixture.gtDir, 'img-004.png');
    await writeFile(file, Buffer.alloc(0));
    const error = await auditError(fixture);
    expect(error.message).toBe(`file://${file}: cannot read the reference mask: the file is empty (0 bytes)`);
  });

  it('names a corrupt mask image', async () => {
    fixture = await buildAuditFixture(scenario());
    const file = path.join(fixture.gtDir, 'img-005.png');
    await writeFile(file, (await blankPng(W, H)).subarray(0, 60)); // a PNG cut short
    const error = await auditError(fixture);
    expect(error.file).toBe(`file://${file}`);
    expect(error.message).toMatch(/cannot read the reference mask: corrupt or truncated image/);
  });

  it('names a COCO image whose size differs from the run image', async () => {
    fixture = await buildAuditFixture(scenario());
    const coco = JSON.parse(await readFile(fixture.cocoPath, 'utf8'));
    coco.images[0].width = 640;
    await writeFile(fixture.cocoPath, JSON.stringify(coco));
    const error = await auditError(fixture, fixture.cocoAudit);
    expect(error.file).toBe(fixture.cocoUri);
    expect(error.message).toContain(
      '("photos/img-000.jpg") is 640×150 (w×h) in the reference, expected 200×150 (w×h)',
    );
  });

  it('names a COCO file that is not JSON, and a run without a stage-3 plan', async () => {
    fixture = await buildAuditFixture(scenario());
    await writeFile(fixture.cocoPath, '{"images": [');
    expect((await auditError(fixture, fixture.cocoAudit)).message).toMatch(/coco\.json: not valid JSON/);
    const error = await runAudit(fixture.out, fixture.stores, {
      runId: 'no-such-run',
      audit: fixture.pngAudit,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditInputError);
    expect((error as Error).message).toMatch(
      /runs\/no-such-run\/stage3\/plan\.json: run no-such-run has no stage-3 plan/,
    );
  });

  it('leaves every run output untouched when it fails, and writes no report', async () => {
    fixture = await buildAuditFixture(scenario());
    // Only the audit's own working files (its sample, for a retry to resume from) may appear.
    const before = await snapshot(fixture.out, runLayout.auditPrefix(fixture.runId));
    await writeFile(path.join(fixture.gtDir, 'img-005.png'), Buffer.alloc(0));
    await auditError(fixture);
    expect(await snapshot(fixture.out, runLayout.auditPrefix(fixture.runId))).toEqual(before);
    const written: string[] = [];
    for await (const key of fixture.out.listKeys(runLayout.auditPrefix(fixture.runId))) written.push(key);
    expect(written.filter((k) => !/\/audit\/(sample\.json|sample\/|matched\/)/.test(k))).toEqual([]);
  });
});
