// The committed reference model honours SAM's ONNX contract (sam-spec §2) in onnxruntime-node: the
// official decoder's names and shapes, the encoder's embedding, and a batched decoder whose rows
// equal the official decoder's outputs for the same prompts.
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { planMaskUpsample, upsampleMaskLogits } from '../../lib/amg/mask-upsample.ts';
import { readModelPackage } from '../../lib/sam/model-package.ts';
import { SamSession } from '../../lib/sam/session.ts';

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

  it('embeds an image to 1×256×64×64, and its batched decoder matches the official one prompt by prompt', async () => {
    const session = await SamSession.load(dir);
    expect(session.hasBatchedDecoder).toBe(true);
    const data = new Uint8Array(300 * 200 * 3).map((_, i) => (i * 37) % 251);
    const embedding = await session.embed({ data, width: 300, height: 200, channels: 3 });
    expect(embedding.tensor.dims).toEqual([1, 256, 64, 64]);
    expect(embedding.inputSize).toEqual([683, 1024]);

    const points = new Float64Array([10, 20, 150, 100, 290, 190]);
    const batched = await session.decodePoints(embedding, points);
    for (let i = 0; i < 3; i++) {
      const single = await session.predict(
        embedding,
        { points: [[points[2 * i]!, points[2 * i + 1]!]] },
        true,
      );
      for (let k = 0; k < 3; k++) {
        expect(batched.iou[i * 4 + k + 1]).toBeCloseTo(single.iouPredictions[k]!, 4);
        const a = batched.lowRes.subarray((i * 4 + k + 1) * 65536, (i * 4 + k + 2) * 65536);
        const b = single.lowResMasks[k]!;
        let maxDiff = 0;
        for (let p = 0; p < a.length; p++) maxDiff = Math.max(maxDiff, Math.abs(a[p]! - b[p]!));
        expect(maxDiff).toBeLessThan(1e-3);
      }
    }
    await session.release();
  });
});

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
