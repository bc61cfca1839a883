// lib/sam/resize-longest-side.ts and lib/sam/preprocess.ts against Pillow itself: the same decoded
// RGB pixels go through both, and the resized uint8 images must agree byte for byte (and the
// normalised, padded tensors bit for bit). Real photos also check that our decoding (sharp, or
// lib/images/bmp.ts) gives the same pixels as Pillow's.
//
// Python: $SAE_PYTHON, else trainer/.venv/bin/python (infra/install-python.sh) with pillow and
// numpy; with segment_anything installed the reference is SAM's own ResizeLongestSide. Real
// photos: $SAE_REAL_DATA/grabcut/images and $SAE_REAL_DATA/robustness/large, when set.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadImage } from '../../lib/images/image-io.ts';
import {
  getPreprocessShape,
  pillowFirstPass,
  pillowVersionFromString,
  resizeBilinearPil,
  type FirstPass,
  type PillowVersion,
  type PixelImage,
} from '../../lib/sam/resize-longest-side.ts';
import { preprocess } from '../../lib/sam/preprocess.ts';
import { askOracle, requireProjectPython } from '../helpers/python-oracle.ts';
import { prng } from '../helpers/random.ts';

const realData = process.env.SAE_REAL_DATA;

interface ParityCase {
  id: string;
  image: PixelImage;
  /** Also compare SAM's normalised, padded tensor. */
  tensor?: boolean;
  /** The original file, to compare decoding with Pillow's. */
  file?: string;
}

interface OracleCaseAnswer {
  id: string;
  native: string;
  hfirst?: string;
  vfirst?: string;
  tensor?: string;
  pil_decoded?: string;
  cv2_decoded?: string;
}

interface OracleAnswer {
  pillow: string;
  numpy: string;
  torch: string | null;
  torchvision: string | null;
  segment_anything: boolean;
  cv2: string | null;
  cases: OracleCaseAnswer[];
}

/** One line of the report printed at the end of each test. */
interface ParityRow {
  id: string;
  size: string;
  target: string;
  firstPass: FirstPass | '-';
  diffNative: number;
  diffHFirst?: number;
  diffVFirst?: number;
  diffTensor?: number;
  diffPilDecode?: number;
  diffCv2Decode?: number;
}

/** Runs the oracle on the cases in a scratch folder; `use` reads its outputs before cleanup. */
function withOracle<T>(
  cases: ParityCase[],
  use: (answer: OracleAnswer, read: (name: string) => Buffer) => T,
): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'sae-pil-parity-'));
  try {
    const request = {
      dir,
      cases: cases.map((c) => {
        writeFileSync(path.join(dir, `${c.id}.rgb`), c.image.data);
        const [outHeight, outWidth] = getPreprocessShape(c.image.height, c.image.width, 1024);
        return {
          id: c.id,
          width: c.image.width,
          height: c.image.height,
          out_width: outWidth,
          out_height: outHeight,
          sam: true,
          tensor: c.tensor ?? false,
          file: c.file,
        };
      }),
    };
    const answer = askOracle<OracleAnswer>('pil_resize_oracle.py', request);
    return use(answer, (name) => readFileSync(path.join(dir, name)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function differingBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.max(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

function asBytes(array: Float32Array): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Compares every output of one case; returns its report line. */
function compareCase(
  c: ParityCase,
  answer: OracleCaseAnswer,
  read: (name: string) => Buffer,
  version: PillowVersion,
) {
  const { width: w, height: h } = c.image;
  const [outH, outW] = getPreprocessShape(h, w, 1024);
  const ours = resizeBilinearPil(c.image, outW, outH, { pillowVersion: version });
  const bothPasses = outW !== w && outH !== h;
  const row: ParityRow = {
    id: c.id,
    size: `${w}×${h}`,
    target: `${outW}×${outH}`,
    firstPass: bothPasses ? pillowFirstPass(version, w, h, outW, outH) : '-',
    diffNative: differingBytes(ours.data, read(answer.native)),
  };
  if (answer.hfirst) {
    row.diffHFirst = differingBytes(
      resizeBilinearPil(c.image, outW, outH, { firstPass: 'horizontal' }).data,
      read(answer.hfirst),
    );
  }
  if (answer.vfirst) {
    row.diffVFirst = differingBytes(
      resizeBilinearPil(c.image, outW, outH, { firstPass: 'vertical' }).data,
      read(answer.vfirst),
    );
  }
  if (answer.tensor) {
    row.diffTensor = differingBytes(
      asBytes(preprocess(c.image, { pillowVersion: version }).tensor),
      read(answer.tensor),
    );
  }
  if (answer.pil_decoded) row.diffPilDecode = differingBytes(c.image.data, read(answer.pil_decoded));
  if (answer.cv2_decoded) row.diffCv2Decode = differingBytes(c.image.data, read(answer.cv2_decoded));
  return row;
}

function runParity(cases: ParityCase[]): { answer: OracleAnswer; rows: ParityRow[] } {
  return withOracle(cases, (answer, read) => {
    const version = pillowVersionFromString(answer.pillow);
    const rows = cases.map((c, i) => compareCase(c, answer.cases[i]!, read, version));
    const reference = answer.segment_anything
      ? `segment_anything ResizeLongestSide (torchvision ${answer.torchvision}, Pillow ${answer.pillow})`
      : `Pillow ${answer.pillow} Image.resize(BILINEAR)`;
    console.log(
      `reference: ${reference}; matched as ${version}; tensor by ${answer.torch ? `torch ${answer.torch}` : 'numpy'}; ` +
        `cv2 ${answer.cv2 ?? 'absent'}`,
    );
    console.table(rows);
    return { answer, rows };
  });
}

function expectAllZero(rows: ParityRow[]): void {
  for (const row of rows) {
    expect(row.diffNative, `${row.id} resize vs reference`).toBe(0);
    if (row.diffHFirst !== undefined) expect(row.diffHFirst, `${row.id} horizontal-first`).toBe(0);
    if (row.diffVFirst !== undefined) expect(row.diffVFirst, `${row.id} vertical-first`).toBe(0);
    if (row.diffTensor !== undefined) expect(row.diffTensor, `${row.id} tensor bytes`).toBe(0);
  }
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/** Noise in some rows, smooth gradients in others: noise stresses rounding, gradients the weights. */
function randomImage(width: number, height: number, seed: number): PixelImage {
  const rand = prng(seed);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const smooth = y % 7 < 3;
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const i = (y * width + x) * 3 + c;
        data[i] = smooth ? (x * 255) / Math.max(width - 1, 1) + c * 40 : Math.floor(rand() * 256);
      }
    }
  }
  return { data, width, height, channels: 3 };
}

// [width, height]: upsampling, downsampling, unchanged sides, thin and tall shapes, and the
// shapes where Pillow releases pick different pass orders (1000×2500, 20×2100).
const SYNTHETIC_SIZES: Array<[number, number]> = [
  [300, 200],
  [200, 300],
  [1, 1],
  [2, 3],
  [1, 7],
  [7, 1],
  [2000, 1],
  [3, 2000],
  [2000, 3],
  [20, 2100],
  [1000, 2500],
  [2250, 1500],
  [1500, 2250],
  [1025, 7],
  [333, 777],
  [640, 480],
  [1030, 80],
  [80, 1030],
  [1024, 1024],
  [1024, 700],
  [4000, 3000],
];
const TENSOR_SIZES = new Set(['300x200', '1500x2250', '1x1']);

function syntheticCases(): ParityCase[] {
  return SYNTHETIC_SIZES.map(([w, h], i) => ({
    id: `random-${w}x${h}`,
    image: randomImage(w, h, 1000 + i),
    tensor: TENSOR_SIZES.has(`${w}x${h}`),
  }));
}

const IMAGE_EXTENSIONS = /\.(jpe?g|png|bmp)$/i;
const TENSOR_FILES = new Set(['sam2_cars_2250x1500.jpg', 'book.bmp', '124080.jpg']);

/** Image files directly in `folder`, or in its subfolders too with `recursive`. */
function imageFiles(folder: string, recursive = false): string[] {
  return readdirSync(folder, { recursive, withFileTypes: true })
    .filter((entry) => entry.isFile() && IMAGE_EXTENSIONS.test(entry.name))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

async function realCases(files: string[]): Promise<ParityCase[]> {
  const cases: ParityCase[] = [];
  for (const file of files) {
    const name = path.basename(file);
    const image = await loadImage(readFileSync(file), { name });
    cases.push({ id: name.replace(/[^\w.-]/g, '_'), image, file, tensor: TENSOR_FILES.has(name) });
  }
  return cases;
}

/** Real photos go through the oracle a few at a time to keep the scratch folder small. */
async function runRealParity(files: string[], batchSize = 10): Promise<ParityRow[]> {
  expect(files.length).toBeGreaterThan(0);
  const rows: ParityRow[] = [];
  for (let i = 0; i < files.length; i += batchSize) {
    rows.push(...runParity(await realCases(files.slice(i, i + batchSize))).rows);
  }
  return rows;
}

function expectDecodingMatchesPillow(rows: ParityRow[]): void {
  for (const row of rows) expect(row.diffPilDecode, `${row.id} decoded pixels vs Pillow`).toBe(0);
}

// ---------------------------------------------------------------------------------------------

describe('SAM preprocessing agrees with Pillow byte for byte', () => {
  beforeAll(() => requireProjectPython('pillow and numpy'));

  it('on random images of awkward sizes (both pass orders, tensors too)', () => {
    const { rows } = runParity(syntheticCases());
    expect(rows).toHaveLength(SYNTHETIC_SIZES.length);
    expectAllZero(rows);
  });

  describe.skipIf(!realData)('on real photos (set SAE_REAL_DATA to the shared data folder to run)', () => {
    it('GrabCut images (JPEG and BMP)', async () => {
      const rows = await runRealParity(imageFiles(path.join(realData!, 'grabcut/images')));
      expect(rows.length).toBe(50);
      expectAllZero(rows);
      expectDecodingMatchesPillow(rows);
    });

    it('large photos (2250×1500, 2048×1366, 1365×1080)', async () => {
      const rows = await runRealParity(imageFiles(path.join(realData!, 'robustness/large')));
      expect(rows.length).toBe(3);
      expectAllZero(rows);
      expectDecodingMatchesPillow(rows);
    });

    it('the robustness set (EXIF orientations, alpha, grey, BMP, progressive, PNGs named .jpg, 24 MP)', async () => {
      const files = imageFiles(path.join(realData!, 'robustness'), true).filter(
        (f) => !f.includes('/large/'),
      );
      const rows = await runRealParity(files);
      expect(rows.length).toBe(files.length);
      expectAllZero(rows);
      expectDecodingMatchesPillow(rows);
    });
  });
});
