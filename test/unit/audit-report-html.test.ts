// report.html must open offline: no external URL anywhere, images only as data: URIs, and text
// from the inputs (file names can hold anything) escaped.
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { computeFigures, countSummary } from '../../lib/audit/figures.ts';
import { outline, renderOverlay, sampleMask } from '../../lib/audit/overlay.ts';
import { esc, heatmapSvg, histogramSvg, renderReportHtml } from '../../lib/audit/report-html.ts';
import type { AuditReport } from '../../lib/audit/report.ts';
import { encodeMask } from '../../lib/rle.ts';
import { rectMask } from './audit-fixture.ts';

function report(overrides: Partial<AuditReport> = {}): AuditReport {
  const humans = [0.95, 0.5, 0.99].map((v) => ({ bestIou: v, pairIou: v, area: 5000 }));
  const nasty = 'file:///data/<script>alert("x")</script>.jpg';
  return {
    run: 'r1',
    reference: {
      uri: 'file:///gt/',
      format: 'png',
      ignoreValue: 128,
      exhaustive: false,
      images: 3,
      unmatchedImages: 1,
    },
    runImages: { segmented: 3, failed: 0, unfinishedShards: 0, withoutReference: 1 },
    sample: { requested: 500, seed: 0, candidates: 2, audited: 2 },
    masks: { human: 3, automatic: 3, skippedCrowd: 0, skippedEmpty: 0 },
    figures: computeFigures(humans, [{ pairIou: 0.95, area: 5000 }], false),
    paper: { shareAbove090: 0.94, shareAbove075: 0.97 },
    masksPerImage: { human: countSummary([1, 2]), automatic: countSummary([1, 2]), run: null },
    gate: {
      passed: true,
      failures: [],
      thresholds: { minShareAbove090: null, minShareAbove075: null, minMeanIou: null },
      configured: false,
    },
    worst: [
      {
        imageId: 1,
        image: nasty,
        reference: 'file:///gt/x.png',
        width: 10,
        height: 10,
        humanMasks: 1,
        automaticMasks: 1,
        meanBestIou: 0.5,
        worstIou: 0.5,
        worstHumanMask: 'value 255',
        worstHumanIndex: 0,
        worstAutoIndex: 0,
        matchedAt050: 1,
        ignoredPixels: 0,
      },
    ],
    gallery: [
      {
        rank: 0,
        key: 'g/000.jpg',
        imageId: 1,
        image: nasty,
        humanMask: 'value 255',
        autoIndex: 0,
        iou: 0.5,
        meanBestIou: 0.5,
      },
    ],
    heatmap: {
      source: 'runs/r1/dataset/stats.json',
      counts: [
        [0, 1],
        [2, 3],
      ],
    },
    notes: ['a <note>'],
    keys: { json: 'a', html: 'b', rows: 'c' },
    ...overrides,
  };
}

describe('renderReportHtml', () => {
  it('is self-contained: no external URL, images inline', () => {
    const html = renderReportHtml(report(), new Map([['g/000.jpg', Buffer.from([0xff, 0xd8, 0xff])]]));
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?(https?:|\/\/)/i);
    expect(html).not.toMatch(/<link|@import|url\(/i);
    expect(html).toContain('src="data:image/jpeg;base64,/9j/"');
    // The only http:// is the SVG namespace, which browsers never fetch.
    expect(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')).not.toContain('http');
  });

  it('escapes text from the inputs', () => {
    const html = renderReportHtml(report(), new Map());
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.jpg');
    expect(html).toContain('a &lt;note&gt;');
  });

  it('shows the headline figures against the paper, and the gate', () => {
    const passed = renderReportHtml(report(), new Map());
    expect(passed).toContain('66.7%'); // 2 of 3 above 0.90
    expect(passed).toContain('paper: 94.0%');
    expect(passed).toContain('No quality gate is configured');
    const failed = renderReportHtml(
      report({
        gate: {
          passed: false,
          failures: ['share of IoU > 0.90 is 66.7%, below the gate 94.0%'],
          thresholds: { minShareAbove090: 0.94, minShareAbove075: null, minMeanIou: null },
          configured: true,
        },
      }),
      new Map(),
    );
    expect(failed).toContain('Quality gate failed');
    expect(failed).toContain('share of IoU &gt; 0.90 is 66.7%, below the gate 94.0%');
  });

  it('leaves the heatmap out when the run has no statistics', () => {
    expect(renderReportHtml(report(), new Map())).toContain('Where mask centres fall');
    expect(renderReportHtml(report({ heatmap: null }), new Map())).not.toContain('Where mask centres fall');
  });
});

describe('charts', () => {
  it('draws one bar per histogram bin and one cell per heatmap count', () => {
    const bins = Array.from({ length: 20 }, (_, i) => ({ from: i / 20, to: (i + 1) / 20, count: i }));
    expect(histogramSvg(bins).match(/<rect /g)).toHaveLength(20);
    expect(
      heatmapSvg([
        [0, 1, 2],
        [3, 4, 5],
      ]).match(/<rect /g),
    ).toHaveLength(6);
  });

  it('escapes the five HTML special characters', () => {
    expect(esc(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});

describe('renderOverlay', () => {
  it('downscales to 480 px wide and draws the human mask green, the automatic one magenta', async () => {
    const w = 960;
    const h = 480;
    const photo = await sharp({ create: { width: w, height: h, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    const human = encodeMask(rectMask({ x: 100, y: 100, w: 200, h: 200 }, w, h), h, w);
    const auto = encodeMask(rectMask({ x: 600, y: 100, w: 200, h: 200 }, w, h), h, w);
    const jpeg = await renderOverlay(photo, 'photo.png', { human, auto });
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.format]).toEqual([480, 240, 'raw']);
    const pixel = (x: number, y: number) =>
      Array.from(data.subarray((y * 480 + x) * 3, (y * 480 + x) * 3 + 3));
    const [hr, hg, hb] = pixel(100, 100); // centre of the human box at half size
    expect(hg).toBeGreaterThan(hr! + 30);
    expect(hg).toBeGreaterThan(hb! + 30);
    const [ar, ag, ab] = pixel(350, 100);
    expect(ar).toBeGreaterThan(ag! + 30);
    expect(ab).toBeGreaterThan(ag! + 30);
    const [gr, gg, gb] = pixel(240, 220); // untouched grey
    expect(Math.max(gr!, gg!, gb!) - Math.min(gr!, gg!, gb!)).toBeLessThan(8);
  });

  it('samples masks at the display size and outlines both sides of the edge', () => {
    const mask = sampleMask(encodeMask(rectMask({ x: 2, y: 2, w: 4, h: 4 }, 8, 8), 8, 8), 4, 4);
    expect(Array.from(mask)).toEqual([0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
    expect(Array.from(outline(mask, 4, 4))).toEqual([0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0]);
  });
});
