// lib/sam/embedding-file.ts: the file round-trips, float16 keeps the decoder's masks within 0.5% IoU
// of float32's on the reference model, and every kind of broken file is refused by name.
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { planMaskUpsample, upsampleMaskLogits } from '../../lib/amg/mask-upsample.ts';
import { loadImage } from '../../lib/images/image-io.ts';
import {
  decodeEmbeddingFile,
  encodeEmbeddingFile,
  EmbeddingFileError,
  readEmbeddingHeader,
} from '../../lib/sam/embedding-file.ts';
import { SamSession, type ImageEmbedding } from '../../lib/sam/session.ts';
import { maskIou } from '../../lib/stage1/click-simulator.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';

const MODEL = resolve(import.meta.dirname, '../../models/sae-ref');
/** The bound: float16 is fine if the decoder's masks stay within 0.5% IoU. */
const MIN_IOU = 0.995;

function fileInput(session: SamSession, embedding: ImageEmbedding) {
  return {
    model: session.modelId,
    data: embedding.tensor.data as Float32Array,
    shape: embedding.tensor.dims,
    originalSize: embedding.originalSize,
    inputSize: embedding.inputSize,
  };
}

const binary = (logits: Float32Array) => Uint8Array.from(logits, (v) => (v > 0 ? 1 : 0));

describe('embedding files on the reference model', () => {
  let session: SamSession;
  const images: { name: string; embedding: ImageEmbedding }[] = [];

  beforeAll(async () => {
    session = await SamSession.load(MODEL);
    const files = new Map<string, Uint8Array>();
    await generateSynthDataset({ images: 2, seed: 4242, write: async (k, b) => void files.set(k, b) });
    for (const [name, bytes] of files) {
      if (!name.startsWith('images/')) continue;
      images.push({ name, embedding: await session.embed(await loadImage(bytes)) });
    }
  }, 120_000);

  it('float32 round-trips exactly, with the header the browser and the annotators need', () => {
    const { embedding } = images[0]!;
    const bytes = encodeEmbeddingFile(fileInput(session, embedding), 'float32');
    const { header, data } = decodeEmbeddingFile(bytes, 'a.bin');
    expect(data).toEqual(embedding.tensor.data);
    const [h, w] = embedding.originalSize;
    expect(header).toEqual({
      model: session.modelId,
      dtype: 'float32',
      shape: [1, 256, 64, 64],
      originalSize: [h, w],
      inputSize: embedding.inputSize,
      scale: 1024 / Math.max(h, w),
    });
    expect(readEmbeddingHeader(bytes, 'a.bin').dataStart % 8).toBe(0);
  });

  it(
    'float16 halves the file and keeps every decoded mask within 0.5% IoU of float32',
    { timeout: 120_000 },
    async () => {
      let worst = 1;
      let masks = 0;
      for (const { embedding } of images) {
        const f16 = encodeEmbeddingFile(fileInput(session, embedding), 'float16');
        const f32 = encodeEmbeddingFile(fileInput(session, embedding), 'float32');
        expect(f16.length).toBeLessThan(f32.length / 2 + 1024);
        const { header, data } = decodeEmbeddingFile(f16, 'a.bin');
        const half = session.embeddingFrom('a.bin', header, data);
        const [h, w] = embedding.originalSize;
        // A 4×4 grid of single clicks, every multimask output, as a first click in the tool gives.
        for (let gy = 0; gy < 4; gy++) {
          for (let gx = 0; gx < 4; gx++) {
            const prompt = {
              points: [[((gx + 0.5) * w) / 4, ((gy + 0.5) * h) / 4]] as [number, number][],
              labels: [1],
            };
            const full = await session.predict(embedding, prompt);
            const approx = await session.predict(half, prompt);
            const plan = planMaskUpsample(h, w);
            const mask = (lowRes: Float32Array) => binary(upsampleMaskLogits(lowRes, plan).data);
            for (let k = 0; k < full.lowResMasks.length; k++) {
              worst = Math.min(worst, maskIou(mask(full.lowResMasks[k]!), mask(approx.lowResMasks[k]!)));
              masks += 1;
            }
          }
        }
      }
      console.log(
        `float16 embeddings: worst mask IoU against float32 ${worst.toFixed(5)} over ${masks} masks`,
      );
      expect(worst).toBeGreaterThanOrEqual(MIN_IOU);
    },
  );

  it("refuses another model's embedding", () => {
    const bytes = encodeEmbeddingFile(
      { ...fileInput(session, images[0]!.embedding), model: 'other@1' },
      'float16',
    );
    const { header, data } = decodeEmbeddingFile(bytes, 's3://b/e.bin');
    expect(() => session.embeddingFrom('s3://b/e.bin', header, data)).toThrow(
      `s3://b/e.bin: computed by other@1, not by ${session.modelId} whose decoder would read it`,
    );
  });
});

describe('broken embedding files', () => {
  const good = encodeEmbeddingFile(
    {
      model: 'm@1',
      data: new Float32Array(6).fill(0.5),
      shape: [1, 2, 3],
      originalSize: [10, 20],
      inputSize: [512, 1024],
    },
    'float16',
  );
  const refused = (bytes: Uint8Array) => {
    try {
      decodeEmbeddingFile(bytes, 'e.bin');
    } catch (err) {
      expect(err).toBeInstanceOf(EmbeddingFileError);
      return (err as Error).message;
    }
    throw new Error('accepted');
  };

  it('names what is wrong', () => {
    expect(decodeEmbeddingFile(good, 'e.bin').data).toEqual(new Float32Array(6).fill(0.5));
    expect(refused(Buffer.from('{"model": 1}'))).toBe(
      'e.bin: not an embedding file (it does not start with "SAEEMB01")',
    );
    expect(refused(good.subarray(0, 20))).toMatch(/^e\.bin: truncated: its header needs \d+ bytes/);
    expect(refused(good.subarray(0, good.length - 2))).toBe(
      'e.bin: 10 bytes of data, expected 12 (1×2×3 float16)',
    );
    const badJson = Buffer.from(good);
    badJson.write('{', 13, 'utf8');
    expect(refused(badJson)).toMatch(/^e\.bin: its header is not valid JSON/);
    const badHeader = Buffer.from(good);
    badHeader.write('"dtype":"int8"   ', badHeader.indexOf('"dtype"'), 'utf8');
    expect(refused(badHeader)).toMatch(/^e\.bin: bad header: .*dtype/s);
  });
});
