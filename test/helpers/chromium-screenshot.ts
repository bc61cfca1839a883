// A page as a person sees it: Debian's headless Chromium opens a local HTML file with networking
// off and writes a PNG of the window. The report tests check the picture's pixels.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

export const CHROMIUM = '/usr/bin/chromium';

/** Screenshots `html` into `png` at width×height; Chromium's profile goes under `workDir`. */
export async function screenshot(
  html: string,
  png: string,
  size: { width: number; height: number },
  workDir: string,
): Promise<void> {
  await promisify(execFile)(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--user-data-dir=${path.join(workDir, 'profile')}`,
      `--screenshot=${png}`,
      `--window-size=${size.width},${size.height}`,
      pathToFileURL(html).href,
    ],
    { timeout: 120_000 },
  );
}
