// `sa-engine segment` as a user's first try: one image in, its SA-1B JSON out; a bad file gets a
// clear message and a non-zero exit, not a stack trace.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { decompressRle, rleArea } from '../../lib/rle.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'sae-segment-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sa-engine segment', () => {
  it('writes the SA-1B JSON of one image', async () => {
    let image = '';
    await generateSynthDataset({
      images: 1,
      seed: 8,
      write: async (key, bytes) => {
        if (!key.startsWith('images/')) return;
        image = join(dir, key.slice('images/'.length));
        writeFileSync(image, bytes);
      },
    });
    const out = join(dir, 'masks.json');
    const { stdout } = await run(
      'node',
      ['bin/sa-engine.mjs', 'segment', image, '--out', out, '--points-per-side', '4'],
      { timeout: 240_000 },
    );
    expect(stdout).toMatch(/masks in .* s →/);
    const sa1b = JSON.parse(readFileSync(out, 'utf8'));
    expect(sa1b.image).toMatchObject({ image_id: 0, file_name: image.slice(dir.length + 1) });
    expect(sa1b.image.width).toBeGreaterThan(0);
    for (const ann of sa1b.annotations) expect(rleArea(decompressRle(ann.segmentation))).toBe(ann.area);
  });

  it('refuses a file that is not an image, saying so', async () => {
    const notAnImage = join(dir, 'notes.jpg');
    writeFileSync(notAnImage, 'plain text\n');
    const failure = await run('node', [
      'bin/sa-engine.mjs',
      'segment',
      notAnImage,
      '--out',
      join(dir, 'x.json'),
    ]).catch((e) => e);
    expect(failure.code).toBe(1);
    expect(failure.stderr).toMatch(/sa-engine: notes\.jpg: unsupported image/);
    expect(failure.stderr).not.toMatch(/at .*\.ts:\d+/);
  });
});
