// The committed reference model honours SAM's ONNX contract (sam-spec §2) in onnxruntime-node: the
// official decoder's names and shapes, the encoder's embedding, and a batched decoder whose rows
// equal the official decoder's outputs for the same prompts.
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
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

  it("predict's masks lie where its low-res logits do, for portrait, landscape and square images", async () => {
    // The exported decoder's own `masks` output was cropped for its export example's aspect ratio:
    // a portrait image's masks came out stretched, 200 px from the click. predict() upsamples the
    // low-res logits itself now.
    const session = await SamSession.load(dir);
    for (const [h, w] of [
      [921, 681],
      [683, 1024],
      [500, 500],
    ] as const) {
      const data = new Uint8Array(h * w * 3).map((_, i) => (i % (w * 3) < w * 1.5 ? 40 : 200) + (i % 7));
      const embedding = await session.embed({ data, width: w, height: h, channels: 3 });
      const scale = 1024 / Math.max(h, w);
      const out = await session.predict(embedding, { points: [[w / 2, h / 2]] }, true);
      for (let k = 0; k < 3; k++) {
        const low = centroid(out.lowResMasks[k]!, 256, 256);
        const full = centroid(out.masks[k]!, h, w);
        if (!low || !full) continue;
        // A low-res pixel is 4 input pixels: centre (4i + 1.5) in the 1024 frame.
        expect(Math.abs((4 * low.x + 1.5) / scale - full.x), `${h}×${w} mask ${k} x`).toBeLessThan(4 / scale);
        expect(Math.abs((4 * low.y + 1.5) / scale - full.y), `${h}×${w} mask ${k} y`).toBeLessThan(4 / scale);
      }
    }
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
