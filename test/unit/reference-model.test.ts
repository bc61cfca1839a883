// The committed reference model honours SAM's ONNX contract (sam-spec §2) in onnxruntime-node: the
// official decoder's names and shapes, the encoder's embedding, and a folded decoder (what clicks
// and the AMG's prompt batches run) whose masks are the official decoder's, prompt by prompt and
// click after click. (decoder_batched.onnx against the official decoder: trainer/tests/test_export.py.)
import { maskIou } from '../../lib/stage1/click-simulator.ts';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { planMaskUpsample, upsampleMaskLogits } from '../../lib/amg/mask-upsample.ts';
import { decoderFeeds, DECODER_OUTPUTS, type Prompt } from '../../lib/sam/decoder-prompt.ts';
import { readModelPackage, readPromptDecoder } from '../../lib/sam/model-package.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { loadImage } from '../../lib/images/image-io.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';

const dir = resolve(import.meta.dirname, '../../models/sae-ref');

describe('models/sae-ref', () => {
  it('has the official decoder inputs and outputs', async () => {
    const pkg = await readModelPackage(dir);
    const decoder = await ort.InferenceSession.create(resolve(dir, pkg.decoder.file));
    expect(decoder.inputNames).toEqual([
      'image_embeddings',
      'point_coords',
      'point_labels',
      'mask_input',
      'has_mask_input',
      'orig_im_size',
    ]);
    expect(decoder.outputNames).toEqual(['masks', 'iou_predictions', 'low_res_masks']);
    const out = await decoder.run({
      image_embeddings: new ort.Tensor(
        'float32',
        new Float32Array(256 * 64 * 64).fill(0.1),
        [1, 256, 64, 64],
      ),
      point_coords: new ort.Tensor('float32', new Float32Array([500, 300, 0, 0]), [1, 2, 2]),
      point_labels: new ort.Tensor('float32', new Float32Array([1, -1]), [1, 2]),
      mask_input: new ort.Tensor('float32', new Float32Array(256 * 256), [1, 1, 256, 256]),
      has_mask_input: new ort.Tensor('float32', new Float32Array([0]), [1]),
      orig_im_size: new ort.Tensor('float32', new Float32Array([480, 640]), [2]),
    });
    expect(out.masks!.dims).toEqual([1, 4, 480, 640]);
    expect(out.iou_predictions!.dims).toEqual([1, 4]);
    expect(out.low_res_masks!.dims).toEqual([1, 4, 256, 256]);
  });

  it("upsampled low-res logits land where the logits are; the export's own masks output does not, for a portrait image", async () => {
    // Why SamSession.predict returns low-res logits only: our decoder.onnx crops its `masks` output
    // for the export example's (landscape) aspect ratio. When the export is fixed, this test says so.
    const session = await SamSession.load(dir);
    const decoder = await ort.InferenceSession.create(join(dir, 'decoder.onnx'));
    for (const [h, w] of [
      [921, 681],
      [683, 1024],
      [500, 500],
    ] as const) {
      const data = new Uint8Array(h * w * 3).map((_, i) => (i % (w * 3) < w * 1.5 ? 40 : 200) + (i % 7));
      const embedding = await session.embed({ data, width: w, height: h, channels: 3 });
      const scale = 1024 / Math.max(h, w);
      const out = await session.predict(embedding, { points: [[w / 2, h / 2]] }, true);
      const raw = await decoder.run({
        image_embeddings: embedding.tensor,
        point_coords: new ort.Tensor(
          'float32',
          new Float32Array([(w / 2) * scale, (h / 2) * scale, 0, 0]),
          [1, 2, 2],
        ),
        point_labels: new ort.Tensor('float32', new Float32Array([1, -1]), [1, 2]),
        mask_input: new ort.Tensor('float32', new Float32Array(65536), [1, 1, 256, 256]),
        has_mask_input: new ort.Tensor('float32', new Float32Array([0]), [1]),
        orig_im_size: new ort.Tensor('float32', new Float32Array([h, w]), [2]),
      });
      const rawMasks = raw.masks!.data as Float32Array;
      let worstRaw = 0;
      for (let k = 0; k < 3; k++) {
        const low = centroid(out.lowResMasks[k]!, 256, 256);
        const ours = centroid(upsampleMaskLogits(out.lowResMasks[k]!, planMaskUpsample(h, w)).data, h, w);
        const theirs = centroid(rawMasks.subarray((k + 1) * h * w, (k + 2) * h * w), h, w);
        if (!low || !ours || !theirs) continue;
        // A low-res pixel is 4 input pixels: centre (4i + 1.5) in the 1024 frame.
        const at = { x: (4 * low.x + 1.5) / scale, y: (4 * low.y + 1.5) / scale };
        expect(Math.hypot(at.x - ours.x, at.y - ours.y), `${h}×${w} mask ${k}`).toBeLessThan(4 / scale);
        worstRaw = Math.max(worstRaw, Math.hypot(at.x - theirs.x, at.y - theirs.y));
      }
      if (h > w)
        expect(worstRaw, 'the export now gets portrait masks right: use its masks again?').toBeGreaterThan(
          20,
        );
    }
    await decoder.release();
    await session.release();
  });

  it('embeds an image to 1×256×64×64, and decodes a batch of points as the official decoder does one by one', async () => {
    const session = await SamSession.load(dir);
    const official = await ort.InferenceSession.create(join(dir, 'decoder.onnx'));
    expect(session.hasBatchedDecoder).toBe(true);
    const data = new Uint8Array(300 * 200 * 3).map((_, i) => (i * 37) % 251);
    const embedding = await session.embed({ data, width: 300, height: 200, channels: 3 });
    expect(embedding.tensor.dims).toEqual([1, 256, 64, 64]);
    expect(embedding.inputSize).toEqual([683, 1024]);

    const points = new Float64Array([10, 20, 150, 100, 290, 190]);
    const batched = await session.decodePoints(embedding, points);
    for (let i = 0; i < 3; i++) {
      const feeds: Record<string, ort.Tensor> = { image_embeddings: embedding.tensor };
      const prompt = { points: [[points[2 * i]!, points[2 * i + 1]!]] as [number, number][] };
      for (const [input, [values, dims]] of Object.entries(decoderFeeds(prompt, [200, 300])))
        feeds[input] = new ort.Tensor('float32', values, dims);
      const single = await official.run(feeds, [...DECODER_OUTPUTS]);
      const iou = single.iou_predictions!.data as Float32Array;
      const lowRes = single.low_res_masks!.data as Float32Array;
      for (let k = 0; k < 4; k++) {
        expect(batched.iou[i * 4 + k]).toBeCloseTo(iou[k]!, 4);
        const a = batched.lowRes.subarray((i * 4 + k) * 65536, (i * 4 + k + 1) * 65536);
        const b = lowRes.subarray(k * 65536, (k + 1) * 65536);
        let maxDiff = 0;
        for (let p = 0; p < a.length; p++) maxDiff = Math.max(maxDiff, Math.abs(a[p]! - b[p]!));
        expect(maxDiff).toBeLessThan(1e-3);
      }
    }
    await official.release();
    await session.release();
  });
});

describe('models/sae-ref decoder_folded.onnx', () => {
  it('is the decoder that clicks run', async () => {
    const pkg = await readModelPackage(dir);
    expect(pkg.foldedDecoder).toEqual({ file: 'decoder_folded.onnx' });
    const { model, externalData } = await readPromptDecoder(pkg);
    expect(Buffer.from(model)).toEqual(await readFile(join(dir, 'decoder_folded.onnx')));
    expect(externalData.map((f) => f.path)).toEqual(['decoder_weights.bin']);
    // Without it, the official decoder (cut to the outputs clicks read) as before.
    const official = await readPromptDecoder({ ...pkg, foldedDecoder: null });
    const session = await ort.InferenceSession.create(official.model, {
      externalData: official.externalData,
    });
    expect(session.inputNames).toContain('orig_im_size');
    expect(session.outputNames).toEqual([...DECODER_OUTPUTS]);
    await session.release();
  });

  it("gives the official decoder's masks, click after click (the previous logits as mask prompt), and for a box", async () => {
    const session = await SamSession.load(dir);
    const official = await ort.InferenceSession.create(join(dir, 'decoder.onnx'));
    const files = new Map<string, Uint8Array>();
    await generateSynthDataset({ images: 1, seed: 7, write: async (k, b) => void files.set(k, b) });
    const [name, bytes] = [...files].find(([k]) => k.startsWith('images/'))!;
    const embedding = await session.embed(await loadImage(bytes, { name }));
    const [h, w] = embedding.originalSize;
    const plan = planMaskUpsample(h, w);
    const clicks: [number, number, number][] = [0.5, 0.3, 0.7, 0.2, 0.6].map((f, i) => [
      w * f,
      h * (1 - f),
      i % 2 === 0 ? 1 : 0,
    ]);
    const prompts: Prompt[] = [{ box: [w * 0.2, h * 0.2, w * 0.7, h * 0.8] }];
    for (let n = 1; n <= clicks.length; n++)
      prompts.push({
        points: clicks.slice(0, n).map(([x, y]) => [x, y]),
        labels: clicks.slice(0, n).map((c) => c[2]),
      });
    let maskInput: Float32Array | undefined;
    let masksWithArea = 0;
    for (const [i, base] of prompts.entries()) {
      const prompt = i > 1 ? { ...base, maskInput } : base;
      const ours = [
        ...(await session.predict(embedding, prompt, false)).lowResMasks,
        ...(await session.predict(embedding, prompt, true)).lowResMasks,
      ];
      const feeds: Record<string, ort.Tensor> = { image_embeddings: embedding.tensor };
      for (const [input, [values, dims]] of Object.entries(decoderFeeds(prompt, [h, w])))
        feeds[input] = new ort.Tensor('float32', values, dims);
      const theirs = (await official.run(feeds, ['low_res_masks'])).low_res_masks!.data as Float32Array;
      for (const [k, a] of ours.entries()) {
        const b = theirs.subarray(k * 65536, (k + 1) * 65536);
        let maxDiff = 0;
        for (let p = 0; p < a.length; p++) maxDiff = Math.max(maxDiff, Math.abs(a[p]! - b[p]!));
        expect(maxDiff, `prompt ${i} mask ${k}`).toBeLessThan(1e-3);
        const [mine, official] = [upsampleMaskLogits(a, plan).data, upsampleMaskLogits(b, plan).data];
        expect(maskIou(binary(mine), binary(official)), `prompt ${i} mask ${k}`).toBeGreaterThan(0.995);
        if (official.filter((v) => v > 0).length >= 50) masksWithArea++;
      }
      maskInput = ours[0];
    }
    // The comparison means something only if the masks are not empty: the clicks' are not (this
    // weak model's box masks are).
    expect(masksWithArea).toBeGreaterThanOrEqual(4 * clicks.length);
    await official.release();
    await session.release();
  });
});

/** The mask `logits > 0`. */
function binary(logits: Float32Array): Uint8Array {
  return Uint8Array.from(logits, (v) => (v > 0 ? 1 : 0));
}

/** Mean (x, y) of the positive logits of a row-major h×w grid, or null when none is positive. */
function centroid(logits: Float32Array, h: number, w: number): { x: number; y: number } | null {
  let sx = 0;
  let sy = 0;
  let n = 0;
  for (let i = 0; i < h * w; i++) {
    if (logits[i]! > 0) {
      sx += i % w;
      sy += Math.floor(i / w);
      n += 1;
    }
  }
  return n === 0 ? null : { x: sx / n, y: sy / n };
}
