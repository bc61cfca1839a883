// The engine report as a person sees it: a finished fixture run's index.html opened from disk in
// headless Chromium with networking off, screenshotted, and the picture checked for the rounds'
// line plots (stage 1 blue, stage 2 purple) and the gallery's mask outlines (a blank, half-rendered
// or picture-less page has none of them).
//
// Needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium); skipped without it.
// Set SAE_ENGINE_REPORT_SCREENSHOT=/some/file.png to keep the screenshot and look at it.
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { CHROMIUM, screenshot } from '../helpers/chromium-screenshot.ts';
import { STAGE_COLOURS } from '../../lib/report/engine-report-html.ts';
import { MASK_PALETTE, writeEngineReport } from '../../lib/report/engine-report.ts';
import { buildEngineFixture, type EngineFixture } from '../unit/engine-report-fixture.ts';

const WIDTH = 1280;
const HEIGHT = 6400;

/** Pixels whose colour is within `tolerance` of `rgb` in every channel. */
function pixelsNear(data: Buffer, channels: number, rgb: readonly number[], tolerance: number): number {
  let hits = 0;
  for (let i = 0; i < data.length; i += channels) {
    if (
      Math.abs(data[i]! - rgb[0]!) <= tolerance &&
      Math.abs(data[i + 1]! - rgb[1]!) <= tolerance &&
      Math.abs(data[i + 2]! - rgb[2]!) <= tolerance
    )
      hits++;
  }
  return hits;
}

function hexRgb(hex: string): number[] {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

describe.skipIf(!existsSync(CHROMIUM))(
  `the engine report in headless Chromium (skipped when ${CHROMIUM} is absent)`,
  () => {
    let fixture: EngineFixture | undefined;
    let work: string | undefined;
    afterAll(async () => {
      await fixture?.cleanup();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('renders the line plots and the gallery offline', async () => {
      fixture = await buildEngineFixture({ complete: true });
      const result = await writeEngineReport(fixture.out, fixture.runId, { stores: fixture.stores });
      expect(result.sections.every((s) => s.filled)).toBe(true);
      work = await mkdtemp(path.join(tmpdir(), 'sae-engine-report-shot-'));
      // A copy outside the run's folder: the page must not need anything next to it.
      const html = path.join(work, 'index.html');
      await writeFile(html, await fixture.out.get(result.key));
      const png = path.join(work, 'index.png');

      await screenshot(html, png, { width: WIDTH, height: HEIGHT }, work);

      if (process.env.SAE_ENGINE_REPORT_SCREENSHOT) {
        await copyFile(png, process.env.SAE_ENGINE_REPORT_SCREENSHOT);
      }

      const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height]).toEqual([WIDTH, HEIGHT]);
      const stats = await sharp(png).greyscale().stats();
      expect(stats.channels[0]!.stdev).toBeGreaterThan(20); // not blank

      // Both line plots draw stage 1's rounds in blue (two points and a line each: about 870 px with
      // the legends' markers, which alone are about 160) and stage 2's round in purple (a square
      // each: about 370 px, legends alone about 200); nothing else on the page has these colours.
      expect(pixelsNear(data, info.channels, hexRgb(STAGE_COLOURS.stage1), 12)).toBeGreaterThan(600);
      expect(pixelsNear(data, info.channels, hexRgb(STAGE_COLOURS.stage2), 12)).toBeGreaterThan(280);
      // Six gallery pictures, each with its first mask outlined in the palette's first colour (a
      // 2 px frame around a 90×70 px rectangle, shown a little larger than drawn).
      expect(pixelsNear(data, info.channels, MASK_PALETTE[0]!, 30)).toBeGreaterThan(6 * 500);
      expect(pixelsNear(data, info.channels, MASK_PALETTE[1]!, 30)).toBeGreaterThan(6 * 400);
    });
  },
);
