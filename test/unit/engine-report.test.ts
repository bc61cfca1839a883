// lib/report: the engine report reads only what a run stored, shows each stage's figures, says
// "not yet" for what a running run has not written, and names the file and field of a bad one.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLayout } from '../../lib/run-layout.ts';
import {
  evenlySpaced,
  readEngineReportData,
  type EngineReportData,
} from '../../lib/report/engine-report-data.ts';
import { lineChartSvg, renderEngineReportHtml, STAGE_COLOURS } from '../../lib/report/engine-report-html.ts';
import { MASK_PALETTE, renderMasks, writeEngineReport } from '../../lib/report/engine-report.ts';
import { compressRle, encodeMask } from '../../lib/rle.ts';
import { rectMask } from './audit-fixture.ts';
import { buildEngineFixture, HOLDOUT, version, type EngineFixture } from './engine-report-fixture.ts';

const ALL_SECTIONS = ['overview', 'rounds', 'models', 'masks-by-stage', 'audit', 'dataset', 'gallery'];

describe('the report of a finished run', () => {
  let f: EngineFixture;
  let data: EngineReportData;
  beforeAll(async () => {
    f = await buildEngineFixture({ complete: true });
    data = await readEngineReportData(f.out, f.runId, { stores: f.stores });
  });
  afterAll(async () => f?.cleanup());

  it('reads the record and which stages have output', () => {
    expect(data.record).toMatchObject({ status: 'completed', ended: true, key: 'runs/engine-run/run.json' });
    expect(data.stages.map((s) => [s.stage, s.enabled, s.output !== null])).toEqual([
      ['stage1', true, true],
      ['stage2', true, true],
      ['stage3', true, true],
      ['audit', true, true],
      ['release', false, false],
    ]);
    expect(data.stages[0]!.output).toBe('2 of 2 rounds closed');
  });

  it("tells the rounds' stages apart: the summary's stage, the result's stage-2 rounds, the config", () => {
    const rows = data.rounds.rows;
    expect(rows.map((r) => [r.round, r.stage])).toEqual([
      [1, 'stage1'],
      [2, 'stage1'],
      [3, 'stage2'],
    ]);
    expect(rows.map((r) => r.secondsMedian)).toEqual([30, 20, 12]);
    expect(rows.map((r) => r.masksPerImage)).toEqual([3, 3, 3]);
    expect(rows[2]).toMatchObject({
      masks: 6,
      prefilledKept: 2,
      prefilledDeleted: 1,
      added: 4,
      detector: 'detector@v2',
      models: { 'sam@v2': 6 },
    });
    expect(data.rounds).toMatchObject({ planned: 3, open: [] });
  });

  it("lists the run's versions and the champion it started from, not another run's", () => {
    const sam = data.models.sam.versions;
    expect(sam.map((v) => [v.version, v.role, v.champion])).toEqual([
      [1, 'before the run', false],
      [2, 'retrain', true],
      [3, 'retrain', false],
    ]);
    // v2's metrics are keyed by held-out set, v3's are flat: both are read.
    expect(sam[1]!.figures).toMatchObject({ dataset: HOLDOUT, miou1click: 0.62, noc90: 6.5, noc85: 5.5 });
    expect(sam[1]!.figures!.miouAtClicks).toEqual({ '1': 0.62, '3': 0.72 });
    expect(sam[1]!.figures!.iouHeadPearson).toBe(0.41);
    expect(sam.map((v) => v.amgThresholds)).toEqual([
      null,
      { predIouThresh: 0.3, stabilityScoreThresh: 0.5, inheritedFrom: 'sam v1' },
      null,
    ]);
    expect(sam[1]!.gate).toMatchObject({ promoted: true, champion: 'sam@v1' });
    expect(sam[1]!.gate!.championFigures!.miou1click).toBe(0.55);
    expect(sam[2]!.figures).toMatchObject({ dataset: null, miou1click: 0.6 });
    expect(sam[2]!.gate).toMatchObject({
      promoted: false,
      reason: 'not promoted: 1-click mIoU 0.620 → 0.600',
    });
    expect(sam[0]!.figures).toBeNull();

    const detector = data.models.detector.versions;
    expect(detector.map((v) => [v.version, v.role, v.champion])).toEqual([
      [1, 'seed', false],
      [2, 'retrain', true],
    ]);
    expect(detector[1]!.figures).toMatchObject({ ap: 0.2, ap50: 0.4, ar100: 0.2 * 1.5, boxes: 6 });
    expect(detector[1]!.gate!.championFigures!.ap).toBe(0.1);
  });

  it('counts masks per stage, and reads the dataset statistics and the audit', async () => {
    const stats = JSON.parse((await f.out.get(runLayout.datasetStats(f.runId))).toString('utf8'));
    const audit = JSON.parse((await f.out.get(runLayout.auditReportJson(f.runId))).toString('utf8'));
    expect(data.masksByStage).toEqual({
      stage1Annotated: 18,
      stage2PrefilledKept: 2,
      stage2Added: 4,
      stage3Automatic: 24,
    });
    expect(data.dataset).toMatchObject({ images: 8, masks: 24, centres: stats.centres });
    expect(data.audit).toMatchObject({ audited: 8, htmlKey: runLayout.auditReportHtml(f.runId) });
    expect(data.audit!.overall.meanIou).toBe(audit.figures.overall.meanIou);
    expect(data.audit!.overall.histogram).toEqual(audit.figures.overall.histogram);
  });

  it("samples the gallery evenly from stage 3's manifest, with each image's masks", () => {
    expect(data.gallery.source).toBe('stage3');
    expect(data.gallery.images.map((g) => g.imageId)).toEqual([0, 2, 3, 4, 6, 7]);
    expect(data.gallery.images.every((g) => g.masks.length === 3)).toBe(true);
    expect(data.gallery.images[0]!.photo).toEqual({ uri: expect.stringMatching(/photo-0\.jpg$/) });
  });

  it('writes one self-contained page with every section filled', async () => {
    const result = await writeEngineReport(f.out, f.runId, { stores: f.stores });
    expect(result.key).toBe('runs/engine-run/report/index.html');
    expect(result.sections).toEqual(ALL_SECTIONS.map((name) => ({ name, filled: true })));
    const html = (await f.out.get(result.key)).toString('utf8');
    // Nothing fetched from anywhere: pictures are data: URIs, the one link is the audit's page.
    expect(html).not.toMatch(/<script|<link|url\(/i);
    const refs = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]!);
    expect(refs.filter((r) => !r.startsWith('data:image/jpeg;base64,'))).toEqual(['../audit/report.html']);
    expect(refs.filter((r) => r.startsWith('data:'))).toHaveLength(6);
    // Both stages in both line plots, with the legend; the models' tables and charts.
    expect(html.split(`fill="${STAGE_COLOURS.stage1}"`).length - 1).toBeGreaterThanOrEqual(2 * 3);
    expect(html.split(`fill="${STAGE_COLOURS.stage2}"`).length - 1).toBeGreaterThanOrEqual(2 * 2);
    expect(html).toContain('stage 2 (semi-automatic)');
    expect(html).toContain('masks per image');
    expect(html).toContain('median seconds per mask');
    expect(html).toContain('not promoted: 1-click mIoU 0.620 → 0.600');
    expect(html).toContain('box AP (held out)');
    expect(html).toContain('v2 <b>(champion)</b>');
    // v2's AMG thresholds are its parent's, and the table says so.
    expect(html).toContain('<td>0.3 / 0.5 <span class="muted">(sam v1\'s)</span></td>');
    expect(html).not.toMatch(/not (written|enabled).*yet/);
  });

  it('escapes what the stored files say', () => {
    const hostile = structuredClone(data);
    hostile.models.sam.versions[2]!.gate!.reason = '<script>alert(1)</script>';
    hostile.rounds.rows[0]!.models = { '<img src=x>': 9 };
    const html = renderEngineReportHtml(hostile, new Map());
    expect(html).not.toMatch(/<script|<img src=x/);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    // Without its pictures the gallery says so instead of breaking.
    expect(html.match(/picture could not be read/g)).toHaveLength(6);
  });
});

describe('the report of a run still in its rounds', () => {
  let f: EngineFixture;
  beforeAll(async () => {
    f = await buildEngineFixture({ complete: false });
  });
  afterAll(async () => f?.cleanup());

  it('fills what exists and says plainly what is not there yet', async () => {
    const result = await writeEngineReport(f.out, f.runId, { stores: f.stores });
    const filled = Object.fromEntries(result.sections.map((s) => [s.name, s.filled]));
    expect(filled).toEqual({
      overview: true,
      rounds: true,
      models: false,
      'masks-by-stage': true,
      audit: false,
      dataset: false,
      gallery: true,
    });
    const html = (await f.out.get(result.key)).toString('utf8');
    expect(html).toContain(
      'Stage 3 has not written its statistics yet (runs/engine-partial/dataset/stats.json)',
    );
    expect(html).toContain('The audit has not written its report yet.');
    expect(html).toContain('No version of sam belongs to this run yet.');
    expect(html).toContain('Round 2 still open (no summary yet).');
    expect(html).toContain('the run has not ended');
    // The gallery shows what people annotated instead.
    expect(html).toContain('Stage 3 has no masks yet');
    expect(html.match(/src="data:image\/jpeg/g)).toHaveLength(3);
  });

  it('reads the open round and the round-export gallery', async () => {
    const data = await readEngineReportData(f.out, f.runId, { stores: f.stores });
    expect(data.record).toMatchObject({ status: 'running', ended: false });
    expect(data.rounds).toMatchObject({ planned: 2, open: [2] });
    expect(data.masksByStage).toEqual({
      stage1Annotated: 9,
      stage2PrefilledKept: null,
      stage2Added: null,
      stage3Automatic: null,
    });
    expect(data.gallery.source).toBe('rounds');
    expect(data.gallery.images.map((g) => [g.key, g.masks.length])).toEqual([
      ['round-1/0', 3],
      ['round-1/1', 3],
      ['round-1/2', 3],
    ]);
    expect(data.gallery.images[0]!.photo).toEqual({
      key: 'runs/engine-partial/stage1/round-1/export/images/0.jpg',
    });
  });

  it('reports a run that has stored nothing but its record', async () => {
    // A key a newer engine added to the config does not stop the report.
    const record = JSON.parse(runRecord('bare', f));
    await f.out.put(
      runLayout.runRecord('bare'),
      JSON.stringify({ ...record, config: { ...record.config, later: {} } }),
    );
    const result = await writeEngineReport(f.out, 'bare', { stores: f.stores });
    expect(result.sections.filter((s) => s.filled).map((s) => s.name)).toEqual(['overview']);
    const html = (await f.out.get(result.key)).toString('utf8');
    expect(html).toContain('No annotation round has closed yet (0 of 2 planned).');
    expect(html).toContain('No masks yet');
    expect(html).toContain('No stage has stored masks yet.');
  });

  it('names the file and the field of a malformed summary', async () => {
    await f.out.put(runLayout.runRecord('broken'), runRecord('broken', f));
    const summary = JSON.parse((await f.out.get(runLayout.stage1RoundSummary(f.runId, 1))).toString('utf8'));
    summary.secondsPerMask.median = 'fast';
    await f.out.put(runLayout.stage1RoundSummary('broken', 1), JSON.stringify(summary));
    await expect(readEngineReportData(f.out, 'broken', { stores: f.stores })).rejects.toThrow(
      /runs\/broken\/stage1\/round-1\/summary\.json: secondsPerMask\.median: .*number/,
    );
    await f.out.put(runLayout.stage1RoundSummary('broken', 1), '{"run": ');
    await expect(writeEngineReport(f.out, 'broken', { stores: f.stores })).rejects.toThrow(
      /runs\/broken\/stage1\/round-1\/summary\.json is not JSON/,
    );
    expect(await f.out.exists(runLayout.engineReport('broken'))).toBe(false);
  });

  it("names the field of a malformed run.json and of a version's metrics", async () => {
    const record = JSON.parse(runRecord('bad-config', f));
    record.config.stage1.rounds = -1;
    await f.out.put(runLayout.runRecord('bad-config'), JSON.stringify(record));
    await expect(readEngineReportData(f.out, 'bad-config', { stores: f.stores })).rejects.toThrow(
      /runs\/bad-config\/run\.json: config\.stage1\.rounds: /,
    );

    await f.out.put(runLayout.runRecord('bad-lineage'), runRecord('bad-lineage', f));
    await version(f.registry, 'sam', {
      idempotencyKey: 'bad-lineage/retrain-1',
      trigger: 'a retrain',
      metrics: { 'holdout.json': { images: 3, masks: 9, miou_1click: 'high' } },
    });
    await expect(readEngineReportData(f.out, 'bad-lineage', { stores: f.stores })).rejects.toThrow(
      /sam\/v1\/lineage\.json: metrics\.holdout\.json\.miou_1click: /,
    );
  });

  it('says which run is missing', async () => {
    await expect(readEngineReportData(f.out, 'nope', { stores: f.stores })).rejects.toThrow(
      /no run nope under .*runs\/nope\/run\.json is missing/,
    );
  });
});

/** run.json of another run id in the same store, with the partial run's config. */
function runRecord(runId: string, f: EngineFixture): string {
  return JSON.stringify({
    run: runId,
    status: 'running',
    updatedAt: '2026-12-07T12:00:00.000Z',
    config: { ...f.config, run: runId },
  });
}

describe('lineChartSvg', () => {
  const series = [
    {
      label: 'stage 1',
      colour: '#111111',
      marker: 'circle' as const,
      points: [
        { x: 1, y: 4 },
        { x: 2, y: 6 },
      ],
    },
    { label: 'stage 2', colour: '#222222', marker: 'square' as const, points: [{ x: 3, y: 9.5 }] },
  ];

  it('draws a line and a marker per point, a legend, both axis labels and the values', () => {
    const svg = lineChartSvg(series, { xLabel: 'round', yLabel: 'masks per image' });
    expect(svg.match(/<polyline /g)).toHaveLength(1); // a single point needs no line
    expect(svg.match(/<circle [^>]*fill="#111111"/g)).toHaveLength(3); // two points and the legend
    expect(svg.match(/<rect [^>]*fill="#222222"/g)).toHaveLength(2);
    expect(svg).toContain('>round</text>');
    expect(svg).toMatch(/rotate\(-90\)"[^>]*>masks per image<\/text>/);
    expect(svg).toContain('>stage 2</text>');
    expect(svg).toContain('>9.5</text>');
    // y starts at 0 and reaches past the highest point.
    expect(svg).toMatch(/text-anchor="end">0<\/text>/);
    expect(svg).toMatch(/text-anchor="end">10<\/text>/);
  });

  it('puts higher values higher and later x further right', () => {
    const svg = lineChartSvg(series, { xLabel: 'x', yLabel: 'y', xTickLabel: (x) => `v${x}` });
    const circles = [...svg.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"[^>]*><title>/g)].map((m) => [
      Number(m[1]),
      Number(m[2]),
    ]);
    expect(circles).toHaveLength(2);
    expect(circles[1]![0]).toBeGreaterThan(circles[0]![0]!);
    expect(circles[1]![1]).toBeLessThan(circles[0]![1]!);
    expect(svg).toContain('>v3</text>');
  });

  it('escapes labels', () => {
    expect(lineChartSvg(series, { xLabel: '<b>', yLabel: 'y' })).toContain('&lt;b&gt;');
  });
});

describe('gallery pictures', () => {
  it('samples evenly and deterministically', () => {
    expect(evenlySpaced(8, 6)).toEqual([0, 2, 3, 4, 6, 7]);
    expect(evenlySpaced(3, 6)).toEqual([0, 1, 2]);
    expect(evenlySpaced(0, 6)).toEqual([]);
    expect(evenlySpaced(1000, 2)).toEqual([250, 750]);
  });

  it('fills and outlines each mask in its own colour', async () => {
    const grey = Buffer.alloc(100 * 80 * 3, 128);
    const photo = await sharp(grey, { raw: { width: 100, height: 80, channels: 3 } })
      .png()
      .toBuffer();
    const masks = [
      { x: 10, y: 10, w: 30, h: 30 },
      { x: 60, y: 30, w: 30, h: 30 },
    ].map((r) => compressRle(encodeMask(rectMask(r, 100, 80), 80, 100)));
    const jpeg = await renderMasks(photo, 'grey.png', masks);
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [
      ...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3),
    ];
    const near = (got: number[], want: readonly number[], tol: number) =>
      got.every((v, i) => Math.abs(v - want[i]!) <= tol);
    expect([info.width, info.height]).toEqual([100, 80]);
    expect(near(at(25, 10), MASK_PALETTE[0]!, 40)).toBe(true); // first mask's outline
    expect(near(at(75, 30), MASK_PALETTE[1]!, 40)).toBe(true); // second mask's outline
    expect(near(at(50, 70), [128, 128, 128], 8)).toBe(true); // outside every mask
    // Inside: the photo tinted a third of the way towards the mask's colour.
    const tinted = MASK_PALETTE[0]!.map((c) => 128 + (c - 128) * 0.35);
    expect(near(at(25, 25), tinted, 8)).toBe(true);
  });
});
