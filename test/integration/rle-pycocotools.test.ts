// lib/rle.ts against pycocotools itself: the same masks go through both, and everything must
// agree exactly (compressed strings, area, toBbox, decode, IoU matrices, merge).
//
// Python: $SAE_PYTHON, else trainer/.venv/bin/python (installed by infra/install-python.sh with
// pycocotools). Real masks: $SAE_REAL_DATA/grabcut/gt/*.bmp and the annotation samples in
// $SAE_REAL_DATA/format_samples, when SAE_REAL_DATA is set.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeBmp } from '../../lib/images/bmp.ts';
import {
  compressRle,
  decodeRle,
  decompressRle,
  encodeMask,
  rleArea,
  rleIouMatrix,
  rleMerge,
  rleToBbox,
  type Rle,
} from '../../lib/rle.ts';
import { askOracle as runOracle, requireProjectPython } from '../helpers/python-oracle.ts';
import { prng } from '../helpers/random.ts';

const realData = process.env.SAE_REAL_DATA;

interface MaskCase {
  name: string;
  h: number;
  w: number;
  data: Uint8Array; // row-major 0/1
}

interface OracleAnswer {
  masks: Array<{ counts: string; area: number; bbox: number[]; decoded_sha256: string }>;
  strings: Array<{ area: number; bbox: number[]; decoded_sha256: string }>;
  iou: Array<{ plain: number[][]; crowd: number[][] }>;
  merge: Array<{ union: string; intersection: string }>;
}

interface OracleRequest {
  masks: Array<{ h: number; w: number; data: string }>;
  strings: Array<{ h: number; w: number; counts: string }>;
  iou: Array<{ dts: number[]; gts: number[]; iscrowd: number[] }>;
  merge: number[][];
}

function askOracle(cases: MaskCase[], strings: OracleRequest['strings'] = []): OracleAnswer {
  const groups = groupBySize(cases);
  const request: OracleRequest = {
    masks: cases.map((c) => ({ h: c.h, w: c.w, data: Buffer.from(c.data).toString('base64') })),
    strings,
    // Every mask of a size against every other one (itself included); every other gt is a crowd.
    iou: groups.map((g) => ({ dts: g, gts: g, iscrowd: g.map((_, i) => i % 2) })),
    merge: groups.filter((g) => g.length > 1),
  };
  return runOracle<OracleAnswer>('rle_oracle.py', request);
}

/** Indices of the cases, grouped by image size (IoU and merge need equal sizes). */
function groupBySize(cases: MaskCase[]): number[][] {
  const groups = new Map<string, number[]>();
  cases.forEach((c, i) => {
    const key = `${c.h}x${c.w}`;
    groups.set(key, [...(groups.get(key) ?? []), i]);
  });
  return [...groups.values()];
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function expectMatrixClose(actual: number[][], expected: number[][]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, d) =>
    row.forEach((v, g) => expect(Math.abs(v - expected[d]![g]!), `[${d}][${g}]`).toBeLessThanOrEqual(1e-12)),
  );
}

/** Runs every comparison of lib/rle.ts against the oracle's answer for the same cases. */
function compareWithOracle(cases: MaskCase[], answer: OracleAnswer): void {
  const rles: Rle[] = cases.map((c) => encodeMask(c.data, c.h, c.w));
  cases.forEach((c, i) => {
    const py = answer.masks[i]!;
    const rle = rles[i]!;
    const label = `${c.name} (${c.h}×${c.w})`;
    expect(compressRle(rle).counts, label).toBe(py.counts);
    expect(decompressRle({ size: [c.h, c.w], counts: py.counts }), label).toEqual(rle);
    expect(rleArea(rle), label).toBe(py.area);
    expect(rleToBbox(rle), label).toEqual(py.bbox);
    expect(sha256(decodeRle(rle)), label).toBe(py.decoded_sha256);
  });
  groupBySize(cases).forEach((group, k) => {
    const sized = group.map((i) => rles[i]!);
    const crowd = group.map((_, i) => i % 2 === 1);
    expectMatrixClose(rleIouMatrix(sized, sized), answer.iou[k]!.plain);
    expectMatrixClose(rleIouMatrix(sized, sized, crowd), answer.iou[k]!.crowd);
  });
  groupBySize(cases)
    .filter((g) => g.length > 1)
    .forEach((group, k) => {
      const sized = group.map((i) => rles[i]!);
      expect(compressRle(rleMerge(sized)).counts).toBe(answer.merge[k]!.union);
      expect(compressRle(rleMerge(sized, true)).counts).toBe(answer.merge[k]!.intersection);
    });
}

// ---------------------------------------------------------------------------------------------
// Generated masks
// ---------------------------------------------------------------------------------------------

function maskOf(h: number, w: number, on: (x: number, y: number) => boolean): Uint8Array {
  const data = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = on(x, y) ? 1 : 0;
  return data;
}

/** Random ellipses and rectangles (few, long runs) or noise (many short runs). */
function randomShapes(rand: () => number, h: number, w: number): Uint8Array {
  if (rand() < 0.25) {
    const p = rand();
    return maskOf(h, w, () => rand() < p);
  }
  const shapes = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => ({
    ellipse: rand() < 0.5,
    cx: rand() * w,
    cy: rand() * h,
    rx: 0.5 + rand() * w * 0.4,
    ry: 0.5 + rand() * h * 0.4,
  }));
  return maskOf(h, w, (x, y) =>
    shapes.some((s) => {
      const dx = (x + 0.5 - s.cx) / s.rx;
      const dy = (y + 0.5 - s.cy) / s.ry;
      return s.ellipse ? dx * dx + dy * dy <= 1 : Math.abs(dx) <= 1 && Math.abs(dy) <= 1;
    }),
  );
}

function generatedCases(): MaskCase[] {
  const rand = prng(20240917);
  const cases: MaskCase[] = [];
  const add = (name: string, h: number, w: number, data: Uint8Array) => cases.push({ name, h, w, data });
  // Edge cases at a few sizes, including 1-pixel-wide images.
  for (const [h, w] of [
    [1, 1],
    [1, 9],
    [9, 1],
    [5, 7],
  ] as const) {
    add(
      'empty',
      h,
      w,
      maskOf(h, w, () => false),
    );
    add(
      'full',
      h,
      w,
      maskOf(h, w, () => true),
    );
    add(
      'first pixel',
      h,
      w,
      maskOf(h, w, (x, y) => x === 0 && y === 0),
    );
    add(
      'last pixel',
      h,
      w,
      maskOf(h, w, (x, y) => x === w - 1 && y === h - 1),
    );
  }
  // Random masks in groups of eight per size (IoU / merge run within a size group).
  for (const [h, w] of [
    [5, 7],
    [32, 32],
    [37, 53],
    [120, 80],
    [240, 320],
  ] as const) {
    for (let k = 0; k < 8; k++) add(`random ${k}`, h, w, randomShapes(rand, h, w));
  }
  // SA-1B-sized images: counts well beyond 16 bits, large positive and negative deltas.
  const [h, w] = [1500, 2250];
  add(
    'big rectangle',
    h,
    w,
    maskOf(h, w, (x, y) => x >= 100 && x < 2000 && y >= 7 && y < 1400),
  );
  add(
    'big ellipse',
    h,
    w,
    maskOf(h, w, (x, y) => ((x - 900) / 800) ** 2 + ((y - 600) / 500) ** 2 <= 1),
  );
  add(
    'tiny object',
    h,
    w,
    maskOf(h, w, (x, y) => x >= 1200 && x < 1204 && y >= 700 && y < 703),
  );
  add(
    'sparse dots',
    h,
    w,
    maskOf(h, w, (x, y) => (x * 7919 + y * 104729) % 9973 === 0),
  );
  return cases;
}

// ---------------------------------------------------------------------------------------------
// Real masks
// ---------------------------------------------------------------------------------------------

function grabcutCases(dir: string): MaskCase[] {
  const files = readdirSync(dir)
    .filter((f) => f.toLowerCase().endsWith('.bmp'))
    .sort();
  return files.flatMap((f) => {
    const { data: rgb, width: w, height: h } = decodeBmp(readFileSync(path.join(dir, f)));
    const grey = new Uint8Array(w * h).map((_, i) => rgb[3 * i]!); // grey palette: R = G = B
    // 255 = object, 128 = unlabelled band: two masks per image, object only and object + band.
    return [
      { name: `${f} object`, h, w, data: grey.map((v) => (v === 255 ? 1 : 0)) },
      { name: `${f} object+band`, h, w, data: grey.map((v) => (v > 0 ? 1 : 0)) },
    ];
  });
}

/** Compressed RLE strings written by pycocotools in released datasets (SA-1B, SA-V). */
function sampleStrings(dir: string): Array<{ h: number; w: number; counts: string }> {
  type Seg = { size: [number, number]; counts: string };
  const sa1b = JSON.parse(readFileSync(path.join(dir, 'sa1b_format_excerpt.json'), 'utf8')) as {
    annotations: Array<{ segmentation: Seg }>;
  };
  const sav = JSON.parse(readFileSync(path.join(dir, 'sav_000001_manual.json'), 'utf8')) as {
    masklet: Seg[][];
  };
  const segs = [...sa1b.annotations.map((a) => a.segmentation), ...sav.masklet.flat()];
  return segs.map((s) => ({ h: s.size[0], w: s.size[1], counts: s.counts }));
}

// ---------------------------------------------------------------------------------------------

describe('lib/rle.ts agrees with pycocotools', () => {
  beforeAll(() => requireProjectPython('pycocotools'));

  it('on generated masks (edge cases, random shapes and noise, SA-1B-sized images)', () => {
    const cases = generatedCases();
    compareWithOracle(cases, askOracle(cases));
  });

  describe.skipIf(!realData)('on real data (set SAE_REAL_DATA to the shared data folder to run)', () => {
    it('GrabCut ground-truth masks', () => {
      const cases = grabcutCases(path.join(realData!, 'grabcut/gt'));
      expect(cases.length).toBeGreaterThanOrEqual(100);
      compareWithOracle(cases, askOracle(cases));
    });

    it('decodes RLE strings from SA-1B and SA-V files exactly as pycocotools does', () => {
      const strings = sampleStrings(path.join(realData!, 'format_samples'));
      const answer = askOracle([], strings);
      strings.forEach((s, i) => {
        const py = answer.strings[i]!;
        const rle = decompressRle({ size: [s.h, s.w], counts: s.counts });
        const mask = decodeRle(rle);
        expect(rleArea(rle)).toBe(py.area);
        expect(rleToBbox(rle)).toEqual(py.bbox);
        expect(sha256(mask)).toBe(py.decoded_sha256);
        // Re-encoding the decoded pixels gives back the very same string.
        expect(compressRle(encodeMask(mask, s.h, s.w)).counts).toBe(s.counts);
      });
    });
  });
});
