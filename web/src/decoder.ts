// The SAM mask decoder in the browser (onnxruntime-web, WebAssembly): the same feeds and the same
// exact upsampling of the low-res logits as the Node side (lib/sam/decoder-prompt.ts,
// lib/amg/mask-upsample.ts), on the embedding the inference pool computed once for the image.
import * as ort from 'onnxruntime-web/wasm';
import { planMaskUpsample, upsampleMaskLogits, type MaskUpsamplePlan } from '../../lib/amg/mask-upsample.ts';
import { DECODER_OUTPUTS, decoderFeeds, pickMasks, type Prompt } from '../../lib/sam/decoder-prompt.ts';
import { decodeEmbeddingFile } from '../../lib/sam/embedding-file.ts';
import type { Size } from '../../lib/sam/resize-longest-side.ts';

export interface Candidate {
  iou: number;
  /** 256×256 logits: the next click's mask prompt. */
  lowRes: Float32Array;
  /**
   * Row-major h×w 0/1, upsampled when first asked for: only the shown candidate is needed at once,
   * and a large image's full-size masks take long.
   */
  mask(): Uint8Array;
}

/** Where the wasm files are served (copied there by web/build.ts). */
const WASM_PATH = '/ort/';

export class BrowserDecoder {
  private constructor(private readonly session: ort.InferenceSession) {}

  /**
   * The decoder and the weights it keeps in files beside it (ONNX external data), by file name.
   * Threads: as many as the page may use (cross-origin isolated) and the machine has.
   */
  static async load(
    model: ArrayBuffer,
    externalData: Record<string, ArrayBuffer> = {},
    threads = defaultThreads(),
  ): Promise<BrowserDecoder> {
    ort.env.wasm.wasmPaths = WASM_PATH;
    ort.env.wasm.numThreads = threads;
    const session = await ort.InferenceSession.create(new Uint8Array(model), {
      executionProviders: ['wasm'],
      graphOptimizationLevel: 'all',
      externalData: Object.entries(externalData).map(([path, data]) => ({
        path,
        data: new Uint8Array(data),
      })),
    });
    return new BrowserDecoder(session);
  }

  /** An image's embedding from its file (lib/sam/embedding-file.ts). */
  static embedding(file: ArrayBuffer, name: string): ImageEmbedding {
    const { header, data } = decodeEmbeddingFile(new Uint8Array(file), name);
    const [h, w] = header.originalSize;
    return {
      tensor: new ort.Tensor('float32', data, header.shape),
      size: [h, w],
      model: header.model,
      plan: planMaskUpsample(h, w),
    };
  }

  async predict(embedding: ImageEmbedding, prompt: Prompt, multimask: boolean): Promise<Candidate[]> {
    const feeds: Record<string, ort.Tensor> = { image_embeddings: embedding.tensor };
    // The folded decoder takes no orig_im_size (lib/sam/model-package.ts readPromptDecoder).
    for (const [name, [data, dims]] of Object.entries(decoderFeeds(prompt, embedding.size)))
      if (this.session.inputNames.includes(name)) feeds[name] = new ort.Tensor('float32', data, dims);
    const out = await this.session.run(feeds, [...DECODER_OUTPUTS]);
    const { iouPredictions, lowResMasks } = pickMasks(
      out.iou_predictions!.data as Float32Array,
      out.low_res_masks!.data as Float32Array,
      multimask,
    );
    return lowResMasks.map((lowRes, i) => {
      let mask: Uint8Array | undefined;
      return { iou: iouPredictions[i]!, lowRes, mask: () => (mask ??= binaryMask(lowRes, embedding)) };
    });
  }
}

export interface ImageEmbedding {
  tensor: ort.Tensor;
  size: Size;
  model: string;
  plan: MaskUpsamplePlan;
}

/** Sam.postprocess_masks of one candidate, thresholded: the image-size mask. */
function binaryMask(lowRes: Float32Array, embedding: ImageEmbedding): Uint8Array {
  const logits = upsampleMaskLogits(lowRes, embedding.plan).data;
  const mask = new Uint8Array(logits.length);
  for (let p = 0; p < mask.length; p++) mask[p] = logits[p]! > 0 ? 1 : 0;
  return mask;
}

function defaultThreads(): number {
  return globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}
