// report.html as a person sees it: opened from disk in headless Chromium with networking off,
// screenshotted, and the picture checked for the IoU histogram's bars and the gallery's magenta
// outlines (a blank or half-rendered page has neither).
//
// Needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium); skipped without it.
// Set SAE_AUDIT_SCREENSHOT=/some/file.png to keep the screenshot and look at it.
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { CHROMIUM, screenshot } from '../helpers/chromium-screenshot.ts';
import { runAudit } from '../../lib/audit/audit.ts';
import { buildAuditFixture, type AuditFixture, type FixtureImage } from '../unit/audit-fixture.ts';

const WIDTH = 1280;
const HEIGHT = 2400;

/** Ten images with a spread of IoUs, so every histogram region and the gallery have content. */
function images(): FixtureImage[] {
  return Array.from({ length: 10 }, (_, i) => ({
    name: `shot-${i}.jpg`,
    w: 480,
    h: 360,
    ignoreBand: i % 2 === 0 ? 3 : 0,
    objects: [
      { rect: { x: 40, y: 40, w: 160, h: 120 }, auto: { kind: 'shift' as const, dx: 4 * i } },
      { rect: { x: 260, y: 180, w: 120, h: 100 }, auto: { kind: 'dilate' as const, k: i } },
      // Every worst pair has an automatic mask, so every gallery picture has a magenta outline.
      { rect: { x: 400, y: 40, w: 24, h: 24 }, auto: { kind: 'erode' as const, k: i % 4 } },
    ],
  }));
}

/** Share of pixels whose colour is within `tolerance` of `rgb`, or that pass `test`. */
function shareOfPixels(
  data: Buffer,
  channels: number,
  test: (r: number, g: number, b: number) => boolean,
): number {
  let hits = 0;
  for (let i = 0; i < data.length; i += channels) if (test(data[i]!, data[i + 1]!, data[i + 2]!)) hits++;
  return hits / (data.length / channels);
}

const near = (r: number, g: number, b: number, target: readonly number[], tolerance: number) =>
  Math.abs(r - target[0]!) <= tolerance &&
  Math.abs(g - target[1]!) <= tolerance &&
  Math.abs(b - target[2]!) <= tolerance;

describe.skipIf(!existsSync(CHROMIUM))(
  `report.html in headless Chromium (skipped when ${CHROMIUM} is absent)`,
  () => {
    let fixture: AuditFixture | undefined;
    let work: string | undefined;
    afterAll(async () => {
      await fixture?.cleanup();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('renders the histogram and the gallery offline', async () => {
      fixture = await buildAuditFixture(images());
      const summary = await runAudit(fixture.out, fixture.stores, {
        runId: fixture.runId,
        audit: {
          ...fixture.pngAudit,
          gate: { minShareAbove090: 0.94, minShareAbove075: 0.97, minMeanIou: null },
        },
      });
      work = await mkdtemp(path.join(tmpdir(), 'sae-audit-shot-'));
      // A copy outside the run's folder: the page must not need anything next to it.
      const html = path.join(work, 'report.html');
      await writeFile(html, await fixture.out.get(summary.reportHtmlKey));
      const png = path.join(work, 'report.png');

      await screenshot(html, png, { width: WIDTH, height: HEIGHT }, work);

      if (process.env.SAE_AUDIT_SCREENSHOT) await copyFile(png, process.env.SAE_AUDIT_SCREENSHOT);

      const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([WIDTH, HEIGHT]);
      const stats = await sharp(png).greyscale().stats();
      expect(stats.channels[0]!.stdev).toBeGreaterThan(20); // not blank

      // The histogram's bars above 0.90 are #2e7d32; the gallery outlines are magenta (the legend's
      // magenta swatch alone is 144 px, 0.005% of the page).
      expect(
        shareOfPixels(data, info.channels, (r, g, b) => near(r, g, b, [0x2e, 0x7d, 0x32], 6)),
      ).toBeGreaterThan(0.0005);
      expect(shareOfPixels(data, info.channels, (r, g, b) => r > 170 && b > 170 && g < 90)).toBeGreaterThan(
        0.0002,
      );
      // The failed gate's banner is rendered too.
      expect(
        shareOfPixels(data, info.channels, (r, g, b) => near(r, g, b, [0xfd, 0xec, 0xea], 3)),
      ).toBeGreaterThan(0.001);
    });
  },
);
