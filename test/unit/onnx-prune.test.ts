// lib/sam/onnx-prune.ts: the decoder cut to the outputs we read gives the same outputs, bit for
// bit, as the whole decoder; anything it cannot prune safely is left as it was.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it } from 'vitest';
import { DECODER_OUTPUTS } from '../../lib/sam/decoder-prompt.ts';
import { readModelPackage } from '../../lib/sam/model-package.ts';
import { externalDataLocations, pruneOnnxOutputs } from '../../lib/sam/onnx-prune.ts';
import { prng } from '../helpers/random.ts';

const dir = resolve(import.meta.dirname, '../../models/sae-ref');

function feeds(seed: number, withMask: boolean): Record<string, ort.Tensor> {
  const random = prng(seed);
  const lowRes = new Float32Array(256 * 256).map(() => random() * 8 - 4);
  return {
    image_embeddings: new ort.Tensor(
      'float32',
      new Float32Array(256 * 64 * 64).map(() => random() - 0.5),
      [1, 256, 64, 64],
    ),
    // A foreground and a background point and a box, in the 1024 frame.
    point_coords: new ort.Tensor(
      'float32',
      new Float32Array([400, 300, 700, 650, 100, 120, 800, 700]),
      [1, 4, 2],
    ),
    point_labels: new ort.Tensor('float32', new Float32Array([1, 0, 2, 3]), [1, 4]),
    mask_input: new ort.Tensor('float32', withMask ? lowRes : new Float32Array(256 * 256), [1, 1, 256, 256]),
    has_mask_input: new ort.Tensor('float32', new Float32Array([withMask ? 1 : 0]), [1]),
    orig_im_size: new ort.Tensor('float32', new Float32Array([480, 640]), [2]),
  };
}

describe('pruneOnnxOutputs', () => {
  it('keeps the reference decoder outputs we read, identical to the whole decoder', async () => {
    const pkg = await readModelPackage(dir);
    const whole = await ort.InferenceSession.create(join(dir, pkg.decoder.file));
    const model = pruneOnnxOutputs(await readFile(join(dir, pkg.decoder.file)), DECODER_OUTPUTS);
    expect(externalDataLocations(model)).toEqual(['decoder_weights.bin']);
    const externalData = [
      { path: 'decoder_weights.bin', data: await readFile(join(dir, 'decoder_weights.bin')) },
    ];
    const pruned = await ort.InferenceSession.create(model, { externalData });
    expect(pruned.outputNames).toEqual([...DECODER_OUTPUTS]);
    expect(pruned.inputNames).toEqual(whole.inputNames);
    for (const [seed, withMask] of [
      [1, false],
      [2, true],
    ] as const) {
      const input = feeds(seed, withMask);
      const expected = await whole.run(input, [...DECODER_OUTPUTS]);
      const got = await pruned.run(input);
      for (const name of DECODER_OUTPUTS) {
        expect(got[name]!.dims).toEqual(expected[name]!.dims);
        expect(Buffer.from((got[name]!.data as Float32Array).buffer)).toEqual(
          Buffer.from((expected[name]!.data as Float32Array).buffer),
        );
      }
    }
  });

  it('drops the nodes and weights only `masks` needed', async () => {
    const bytes = await readFile(join(dir, 'decoder.onnx'));
    const pruned = pruneOnnxOutputs(bytes, DECODER_OUTPUTS);
    expect(pruned.length).toBeLessThan(bytes.length);
    // Pruning what is already pruned changes nothing.
    expect(pruneOnnxOutputs(pruned, DECODER_OUTPUTS)).toBe(pruned);
  });

  it('returns a model that has only the wanted outputs as it was', async () => {
    const batched = await readFile(join(dir, 'decoder_batched.onnx'));
    expect(pruneOnnxOutputs(batched, DECODER_OUTPUTS)).toBe(batched);
    expect(externalDataLocations(batched)).toEqual(['decoder_weights.bin']);
  });

  it('names the outputs a model has when asked for one it lacks', async () => {
    const bytes = await readFile(join(dir, 'decoder.onnx'));
    expect(() => pruneOnnxOutputs(bytes, ['low_res_logits'])).toThrow(
      'the model has no output "low_res_logits" (its outputs: masks, iou_predictions, low_res_masks)',
    );
  });

  it('refuses bytes that are not an ONNX model', () => {
    expect(() => pruneOnnxOutputs(new TextEncoder().encode('not a model'), DECODER_OUTPUTS)).toThrow();
    expect(() => pruneOnnxOutputs(new Uint8Array(0), DECODER_OUTPUTS)).toThrow(/no graph/);
  });

  it('leaves a graph with a subgraph (If, Loop) alone: its outer reads are not listed', () => {
    // ModelProto { graph { node { input "c" output "y" op_type "If" attribute { name "then_branch" g {} } }
    //                      node { input "x" output "z" op_type "Relu" } output { name "y" } output { name "z" } } }
    const W = () => protobuf.Writer.create();
    const attribute = W().uint32(10).string('then_branch').uint32(50).bytes(new Uint8Array(0)).finish();
    const ifNode = W()
      .uint32(10)
      .string('c')
      .uint32(18)
      .string('y')
      .uint32(34)
      .string('If')
      .uint32(42)
      .bytes(attribute)
      .finish();
    const relu = W().uint32(10).string('x').uint32(18).string('z').uint32(34).string('Relu').finish();
    const output = (name: string) => W().uint32(10).string(name).finish();
    const graph = W()
      .uint32(10)
      .bytes(ifNode)
      .uint32(10)
      .bytes(relu)
      .uint32(98)
      .bytes(output('y'))
      .uint32(98)
      .bytes(output('z'))
      .finish();
    const model = W().uint32(58).bytes(graph).finish();
    expect(pruneOnnxOutputs(model, ['z'])).toBe(model);
  });
});
