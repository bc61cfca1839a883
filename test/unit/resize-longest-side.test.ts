// ResizeLongestSide, the Pillow-exact bilinear resize and SAM's normalise + pad.
//
// The golden hashes below were produced by Pillow 13.0.0 (`Image.resize(size, BILINEAR)` on the
// same synthetic pattern, see test/python/pil_resize_oracle.py for the live comparison); the
// "hfirst"/"vfirst" ones by two single-axis resizes in that order, which is how Pillow versions
// differ. The integration test preprocess-pil-parity.test.ts checks the same against real photos.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  getPreprocessShape,
  pillowFirstPass,
  pillowVersionFromString,
  precomputeCoefficients,
  resizeBilinearPil,
  ResizeLongestSide,
  type PixelImage,
} from '../../lib/sam/resize-longest-side.ts';
import { normalizeAndPad, preprocess, preprocessHwc } from '../../lib/sam/preprocess.ts';

/** The oracle's deterministic test pattern: byte i = top 8 bits of (i · 2654435761 mod 2^32). */
function pattern(width: number, height: number, channels = 3): PixelImage {
  const data = new Uint8Array(width * height * channels);
  for (let i = 0; i < data.length; i++) data[i] = Math.imul(i, 2654435761) >>> 24;
  return { data, width, height, channels };
}

function sha16(bytes: Uint8Array | Float32Array): string {
  return createHash('sha256')
    .update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    .digest('hex')
    .slice(0, 16);
}

describe('getPreprocessShape', () => {
  it.each([
    [1500, 2250, [683, 1024]],
    [2250, 1500, [1024, 683]],
    [480, 640, [768, 1024]],
    [200, 300, [683, 1024]],
    [1, 1, [1024, 1024]],
    [1024, 1024, [1024, 1024]],
    // 1 · 0.256 + 0.5 = 0.756 → 0: SAM's formula gives an empty side for shapes beyond 2048:1.
    [1, 4000, [0, 1024]],
  ])('%i×%i (h×w) → %j', (h, w, expected) => {
    expect(getPreprocessShape(h, w, 1024)).toEqual(expected);
  });

  it('rounds half up like int(x + 0.5), not half to even like round()', () => {
    // 5 · (1024 / 2048) = 2.5 → 3 (Python's round(2.5) would give 2).
    expect(getPreprocessShape(5, 2048, 1024)).toEqual([3, 1024]);
    expect(getPreprocessShape(3, 2048, 1024)).toEqual([2, 1024]);
  });

  it('refuses non-integer or empty sizes', () => {
    expect(() => getPreprocessShape(0, 10, 1024)).toThrow(RangeError);
    expect(() => getPreprocessShape(10, 2.5, 1024)).toThrow(RangeError);
  });
});

describe('ResizeLongestSide prompt transforms', () => {
  const t = new ResizeLongestSide(1024);

  it('scales each axis by the ratio of its rounded new size', () => {
    // 1500×2250 → 683×1024: x · 1024/2250, y · 683/1500 (not one common factor).
    const out = t.applyCoords([2250, 1500, 100, 200], [1500, 2250]);
    expect(Array.from(out)).toEqual([
      2250 * (1024 / 2250),
      1500 * (683 / 1500),
      100 * (1024 / 2250),
      200 * (683 / 1500),
    ]);
    expect(out[1]).toBeCloseTo(683, 10);
  });

  it('transforms boxes as two corners', () => {
    const boxes = t.applyBoxes([0, 0, 2250, 1500, 10, 20, 30, 40], [1500, 2250]);
    expect(Array.from(boxes)).toEqual(
      Array.from(t.applyCoords([0, 0, 2250, 1500, 10, 20, 30, 40], [1500, 2250])),
    );
    expect(() => t.applyBoxes([1, 2, 3], [10, 10])).toThrow(RangeError);
    expect(() => t.applyCoords([1, 2, 3], [10, 10])).toThrow(RangeError);
  });

  it('applyImage gives the target size', () => {
    const out = t.applyImage(pattern(300, 200));
    expect([out.height, out.width]).toEqual([683, 1024]);
  });

  it('applyImage refuses images whose short side would round to 0', () => {
    expect(() => t.applyImage(pattern(4000, 1))).toThrow(/too thin/);
    expect(t.applyImage(pattern(2000, 1)).height).toBe(1); // 0.512 + 0.5 → 1
  });
});

describe('Pillow pass order', () => {
  it('follows each release', () => {
    expect(pillowFirstPass('pillow-legacy', 1000, 2500, 410, 1024)).toBe('horizontal');
    expect(pillowFirstPass('pillow-13', 1000, 2500, 410, 1024)).toBe('vertical');
    expect(pillowFirstPass('pillow-13', 2250, 1500, 1024, 683)).toBe('horizontal');
    expect(pillowFirstPass('pillow-13', 1500, 2250, 683, 1024)).toBe('horizontal'); // 1226 ≤ 2 · 817
    expect(pillowFirstPass('pillow-12.2', 1000, 2500, 410, 1024)).toBe('horizontal');
    expect(pillowFirstPass('pillow-12.2', 20, 2100, 10, 1024)).toBe('vertical'); // > 100:1 and shrinking
    expect(pillowFirstPass('pillow-12.2', 20, 2100, 40, 4200)).toBe('horizontal');
  });

  it('maps version strings', () => {
    expect(pillowVersionFromString('13.0.0')).toBe('pillow-13');
    expect(pillowVersionFromString('14.1.0.dev0')).toBe('pillow-13');
    expect(pillowVersionFromString('12.3.0')).toBe('pillow-12.2');
    expect(pillowVersionFromString('12.1.1')).toBe('pillow-legacy');
    expect(pillowVersionFromString('10.4.0')).toBe('pillow-legacy');
    expect(() => pillowVersionFromString('unknown')).toThrow();
  });
});

describe('precomputeCoefficients', () => {
  it('widens the filter when shrinking and keeps it at ±1 pixel when enlarging', () => {
    expect(precomputeCoefficients(2250, 1024).ksize).toBe(7); // support 2.197 → ceil 3 → 7
    expect(precomputeCoefficients(200, 683).ksize).toBe(3);
  });

  it('normalises the weights of each output pixel to about 2^22', () => {
    for (const [inSize, outSize] of [
      [2250, 1024],
      [200, 683],
      [1, 1024],
      [1025, 1024],
    ] as const) {
      const { ksize, bounds, weights } = precomputeCoefficients(inSize, outSize);
      for (let xx = 0; xx < outSize; xx++) {
        const count = bounds[xx * 2 + 1]!;
        expect(bounds[xx * 2]! + count).toBeLessThanOrEqual(inSize);
        let sum = 0;
        for (let x = 0; x < count; x++) sum += weights[xx * ksize + x]!;
        expect(Math.abs(sum - 2 ** 22)).toBeLessThanOrEqual(ksize);
      }
    }
  });
});

describe('resizeBilinearPil matches Pillow 13 byte for byte', () => {
  it('4×3 → 2×2 (downscale, every byte)', () => {
    const out = resizeBilinearPil(pattern(4, 3), 2, 2);
    expect(Array.from(out.data)).toEqual([104, 130, 96, 155, 112, 152, 146, 103, 138, 128, 86, 148]);
  });

  it('3×2 → 5×4 (upscale, every byte)', () => {
    const out = resizeBilinearPil(pattern(3, 2), 5, 4);
    expect(Array.from(out.data)).toEqual([
      0, 158, 60, 87, 143, 45, 218, 120, 23, 196, 98, 154, 181, 83, 241, 36, 130, 96, 97, 115, 81, 190, 92,
      59, 168, 108, 152, 153, 119, 213, 107, 74, 168, 118, 59, 153, 134, 36, 131, 112, 129, 147, 97, 191, 157,
      143, 46, 204, 128, 31, 189, 106, 8, 167, 84, 139, 144, 69, 227, 129,
    ]);
  });

  it.each([
    [300, 200, 1024, 683, '68e34687b36846ed'],
    [2250, 1500, 1024, 683, '1acb25b910bde294'],
    [1000, 2500, 410, 1024, 'd899872fc67952b3'], // Pillow 13 runs the vertical pass first here
    [20, 2100, 10, 1024, '67631648d1068fa9'],
    [1, 1, 1024, 1024, 'e8c3e5e421e90f34'],
    [7, 1025, 7, 1024, 'b32231365329f800'], // vertical pass only
    [640, 480, 1024, 768, 'c7f706c478597bc4'],
  ])('%i×%i → %i×%i', (w, h, outW, outH, hash) => {
    const out = resizeBilinearPil(pattern(w, h), outW, outH, { pillowVersion: 'pillow-13' });
    expect([out.width, out.height, out.channels]).toEqual([outW, outH, 3]);
    expect(sha16(out.data)).toBe(hash);
  });

  it.each([
    [300, 200, 1024, 683, 'vertical', '42f707ba693bea52'],
    [2250, 1500, 1024, 683, 'vertical', '43e116e0b5c97e95'],
    [1000, 2500, 410, 1024, 'horizontal', 'c419c8747aa932dd'],
    [20, 2100, 10, 1024, 'horizontal', '8b5b78086b921d96'],
  ] as const)(
    '%i×%i → %i×%i with the %s pass first (other Pillow releases)',
    (w, h, outW, outH, firstPass, hash) => {
      expect(sha16(resizeBilinearPil(pattern(w, h), outW, outH, { firstPass }).data)).toBe(hash);
    },
  );

  it('legacy Pillow (<= 12.1) order differs from 13 only where 13 goes vertical first', () => {
    const legacy = resizeBilinearPil(pattern(1000, 2500), 410, 1024, { pillowVersion: 'pillow-legacy' });
    expect(sha16(legacy.data)).toBe('c419c8747aa932dd');
  });

  it('handles one channel', () => {
    expect(sha16(resizeBilinearPil(pattern(33, 17, 1), 10, 40).data)).toBe('d032f23e098d1d49');
  });

  it('returns a copy when the size does not change', () => {
    const image = pattern(5, 4);
    const out = resizeBilinearPil(image, 5, 4);
    expect(out.data).not.toBe(image.data);
    expect(out.data).toEqual(image.data);
  });

  it('keeps a flat image flat', () => {
    const image = { data: new Uint8Array(37 * 23 * 3).fill(77), width: 37, height: 23, channels: 3 };
    expect(resizeBilinearPil(image, 101, 9).data.every((v) => v === 77)).toBe(true);
  });

  it('refuses inconsistent input', () => {
    expect(() =>
      resizeBilinearPil({ data: new Uint8Array(10), width: 2, height: 2, channels: 3 }, 4, 4),
    ).toThrow(/expected 2×2×3 = 12/);
    expect(() => resizeBilinearPil(pattern(2, 2), 0, 4)).toThrow(RangeError);
  });

  it('resizes 2250×1500 → 1024×683 quickly', () => {
    const image = pattern(2250, 1500);
    resizeBilinearPil(image, 1024, 683); // warm up the JIT
    const runs = 5;
    const start = performance.now();
    for (let i = 0; i < runs; i++) resizeBilinearPil(image, 1024, 683);
    const ms = (performance.now() - start) / runs;
    console.log(`resizeBilinearPil 2250×1500 → 1024×683: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(1000); // generous: shared CI machines; typically well under 100 ms
  });
});

describe('SAM normalise + pad', () => {
  it('normalises in float32 exactly as torch does (x - mean) / std', () => {
    // Four grey pixels 0, 1, 128, 255: each channel plane then holds those four values.
    const values = [0, 1, 128, 255];
    const data = Uint8Array.from(values.flatMap((v) => [v, v, v]));
    const tensor = normalizeAndPad({ data, width: 4, height: 1, channels: 3 }, 4);
    // numpy: (np.float32(v) - np.float32(mean)) / np.float32(std), printed as float64.
    const expected = [
      [-2.1179039478302, -2.1007792949676514, 0.07406450808048248, 2.248908281326294],
      [-2.0357143878936768, -2.018207311630249, 0.20518210530281067, 2.4285714626312256],
      [-1.804444432258606, -1.7870151996612549, 0.4264923930168152, 2.640000104904175],
    ];
    for (let c = 0; c < 3; c++) {
      expect(Array.from(tensor.subarray(c * 16, c * 16 + 4))).toEqual(expected[c]);
    }
  });

  it('pads bottom and right with zeros after normalising', () => {
    const image = { data: new Uint8Array(2 * 3 * 3).fill(0), width: 2, height: 3, channels: 3 };
    const tensor = normalizeAndPad(image, 4);
    const plane = 16;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 4; x++) {
          const v = tensor[c * plane + y * 4 + x]!;
          if (x < 2 && y < 3) expect(v).not.toBe(0);
          else expect(v).toBe(0);
        }
      }
    }
  });

  it('preprocess matches numpy on a resized pattern and reports the sizes', () => {
    const out = preprocess(pattern(300, 200));
    expect(out.dims).toEqual([1, 3, 1024, 1024]);
    expect(out.inputSize).toEqual([683, 1024]);
    expect(out.originalSize).toEqual([200, 300]);
    expect(out.tensor.length).toBe(3 * 1024 * 1024);
    expect(sha16(out.tensor)).toBe('e9034f255d7851ad');
  });

  it('preprocessHwc gives the resized pixels as float32 HWC', () => {
    const out = preprocessHwc(pattern(300, 200));
    expect(out.dims).toEqual([683, 1024, 3]);
    const resized = resizeBilinearPil(pattern(300, 200), 1024, 683);
    expect(Array.from(out.tensor.subarray(0, 30))).toEqual(Array.from(resized.data.subarray(0, 30)));
  });

  it('refuses non-RGB input', () => {
    expect(() => preprocess(pattern(4, 4, 1))).toThrow(/RGB/);
  });
});
