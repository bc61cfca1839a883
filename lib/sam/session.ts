// SAM over onnxruntime-node: embed an image once, then decode prompts against the embedding.
// Prompts are given in original-image pixels and moved into the 1024 frame here, exactly as the
// official SamPredictor does (sam-spec §1). The official decoder takes one prompt per run; when a
// package has our batched decoder, the automatic mask generator's single-point prompts go through
// it many at a time. A package's folded decoder (the same function for fewer multiply-adds:
// trainer/sae_trainer/folded_attention.py) takes a batch too, and then serves both.
import * as ort from 'onnxruntime-node';
import { join } from 'node:path';
import { EmbeddingFileError, type EmbeddingHeader } from './embedding-file.ts';
import { readModelPackage, readPromptDecoder, type ModelPackage } from './model-package.ts';
import type { PixelImage, Size } from './resize-longest-side.ts';
import { ResizeLongestSide } from './resize-longest-side.ts';
import {
  DECODER_OUTPUTS,
  decoderFeeds,
  LOW_RES,
  LOW_RES_AREA,
  PADDING_LABEL,
  pickMasks,
  type Prompt,
} from './decoder-prompt.ts';
import { preprocess, preprocessHwc } from './preprocess.ts';

export interface SessionSettings {
  executionProvider?: 'cpu' | 'cuda';
  /** 0 = onnxruntime's default (all cores). */
  intraOpThreads?: number;
  interOpThreads?: number;
}

export interface ImageEmbedding {
  tensor: ort.Tensor;
  /** [h', w'] of the resized image inside the 1024 square. */
  inputSize: Size;
  /** [h, w] of the image that was embedded. */
  originalSize: Size;
}

export type { Prompt };

/**
 * Low-res logits only: take them to the image's size with lib/amg/mask-upsample.ts (the exact
 * Sam.postprocess_masks). Not the exported decoder's own `masks` output: exports may crop it for
 * the export example's aspect ratio (a portrait image's masks came out stretched).
 */
export interface Prediction {
  iouPredictions: number[];
  /** Per mask: 256×256 low-res logits; also the next prompt's mask input. */
  lowResMasks: Float32Array[];
  /** [h, w] of the image the masks are for. */
  size: Size;
}

/**
 * Decoder outputs for a batch of single-point prompts: all 4 masks per point as the ONNX decoder
 * gives them. Index 0 is the single-mask token; 1..3 are SAM's multimask outputs (what the AMG uses).
 */
export interface PointBatchOutput {
  count: number;
  /** count × 4 predicted IoUs. */
  iou: Float32Array;
  /** count × 4 × 256 × 256 low-res logits. */
  lowRes: Float32Array;
}

/** The multimask outputs among a point's 4 decoder masks. */
export const MULTIMASK_INDICES = [1, 2, 3] as const;

export class SamSession {
  private readonly transform = new ResizeLongestSide(1024);
  /** Zeros for `mask_input` (no mask prompt), grown once to the largest batch and reused. */
  private zeros = new Float32Array(0);

  private constructor(
    readonly pkg: ModelPackage,
    private readonly encoder: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
    private readonly batchedDecoder: ort.InferenceSession | undefined,
  ) {}

  static async load(packageDir: string, settings: SessionSettings = {}): Promise<SamSession> {
    const pkg = await readModelPackage(packageDir);
    const options = sessionOptions(settings);
    const open = (file: string) => ort.InferenceSession.create(join(pkg.dir, file), options);
    const openDecoder = async () => {
      const { model, externalData } = await readPromptDecoder(pkg);
      return ort.InferenceSession.create(model, { ...options, externalData });
    };
    const [encoder, decoder, batched] = await Promise.all([
      open(pkg.encoder.file),
      openDecoder(),
      // The folded decoder is also the click decoder (readPromptDecoder): one session for both.
      !pkg.foldedDecoder && pkg.batchedDecoder ? open(pkg.batchedDecoder.file) : Promise.resolve(undefined),
    ]);
    return new SamSession(pkg, encoder, decoder, pkg.foldedDecoder ? decoder : batched);
  }

  get modelId(): string {
    return `${this.pkg.name}@${this.pkg.version}`;
  }

  get hasBatchedDecoder(): boolean {
    return this.batchedDecoder !== undefined;
  }

  async embed(image: PixelImage): Promise<ImageEmbedding> {
    const { encoder: spec } = this.pkg;
    const input = spec.preprocessInGraph ? preprocessHwc(image) : preprocess(image);
    const feeds = { [spec.input]: new ort.Tensor('float32', input.tensor, input.dims) };
    const out = await this.encoder.run(feeds);
    const tensor = out[spec.output];
    if (!tensor) throw new Error(`encoder ${spec.file} has no output ${spec.output}`);
    return { tensor, inputSize: input.inputSize, originalSize: input.originalSize };
  }

  /** An embedding read back from a file (./embedding-file.ts); it must be this model's own. */
  embeddingFrom(file: string, header: EmbeddingHeader, data: Float32Array): ImageEmbedding {
    if (header.model !== this.modelId) {
      throw new EmbeddingFileError(
        file,
        `computed by ${header.model}, not by ${this.modelId} whose decoder would read it`,
      );
    }
    return {
      tensor: new ort.Tensor('float32', data, header.shape),
      inputSize: header.inputSize,
      originalSize: header.originalSize,
    };
  }

  /**
   * One prompt through the package's click decoder (the folded one when it has it, else the
   * official one: `readPromptDecoder`); 4 masks (index 0 single-mask) or 3 (multimask).
   */
  async predict(embedding: ImageEmbedding, prompt: Prompt, multimask = true): Promise<Prediction> {
    const [h, w] = embedding.originalSize;
    const feeds: Record<string, ort.Tensor> = { image_embeddings: embedding.tensor };
    for (const [name, [data, dims]] of Object.entries(decoderFeeds(prompt, embedding.originalSize)))
      feeds[name] = new ort.Tensor('float32', data, dims);
    const out = await this.runDecoder(feeds);
    const picked = pickMasks(
      out.iou_predictions!.data as Float32Array,
      out.low_res_masks!.data as Float32Array,
      multimask,
    );
    return {
      ...picked,
      size: [h, w],
    };
  }

  /**
   * Single foreground points (the AMG's prompts) in original-image pixels → the decoder's 4 masks
   * per point as low-res logits. Uses the batched decoder when the package has one.
   */
  async decodePoints(embedding: ImageEmbedding, points: Float64Array): Promise<PointBatchOutput> {
    const count = points.length / 2;
    const coords = this.transform.applyCoords(points, embedding.originalSize);
    // Each prompt is its point plus the padding point (0,0) with label -1, as PyTorch adds it.
    const pointCoords = new Float32Array(count * 4);
    const pointLabels = new Float32Array(count * 2);
    for (let i = 0; i < count; i++) {
      pointCoords.set([coords[i * 2]!, coords[i * 2 + 1]!, 0, 0], i * 4);
      pointLabels.set([1, PADDING_LABEL], i * 2);
    }
    return this.decodePrompts(embedding, pointCoords, pointLabels, count);
  }

  /**
   * Box prompts (x0 y0 x1 y1 in original-image pixels, 4 numbers each) → 4 masks per box as
   * low-res logits; for a box SAM reads the single-mask output (index 0). The stage-2 detector's
   * boxes become masks this way.
   */
  async decodeBoxes(embedding: ImageEmbedding, boxes: Float64Array): Promise<PointBatchOutput> {
    const count = boxes.length / 4;
    // A box is its two corners labelled 2 and 3, with no padding point (sam-spec §2a).
    const pointCoords = new Float32Array(this.transform.applyBoxes(boxes, embedding.originalSize));
    const pointLabels = new Float32Array(count * 2);
    for (let i = 0; i < count; i++) pointLabels.set([2, 3], i * 2);
    return this.decodePrompts(embedding, pointCoords, pointLabels, count);
  }

  /** `count` prompts of 2 points each: (count, 2, 2) coordinates in the 1024 frame and (count, 2) labels. */
  private decodePrompts(
    embedding: ImageEmbedding,
    pointCoords: Float32Array,
    pointLabels: Float32Array,
    count: number,
  ): Promise<PointBatchOutput> {
    return this.batchedDecoder
      ? this.decodeBatched(embedding, pointCoords, pointLabels, count)
      : this.decodeOneByOne(embedding, pointCoords, pointLabels, count);
  }

  private async decodeBatched(
    embedding: ImageEmbedding,
    pointCoords: Float32Array,
    pointLabels: Float32Array,
    count: number,
  ): Promise<PointBatchOutput> {
    const out = await this.batchedDecoder!.run(
      {
        image_embeddings: embedding.tensor,
        point_coords: new ort.Tensor('float32', pointCoords, [count, 2, 2]),
        point_labels: new ort.Tensor('float32', pointLabels, [count, 2]),
        mask_input: new ort.Tensor('float32', this.zeroMasks(count), [count, 1, LOW_RES, LOW_RES]),
        has_mask_input: new ort.Tensor('float32', new Float32Array(count), [count]),
      },
      [...DECODER_OUTPUTS],
    );
    return {
      count,
      iou: out.iou_predictions!.data as Float32Array,
      lowRes: out.low_res_masks!.data as Float32Array,
    };
  }

  private async decodeOneByOne(
    embedding: ImageEmbedding,
    pointCoords: Float32Array,
    pointLabels: Float32Array,
    count: number,
  ): Promise<PointBatchOutput> {
    const iou = new Float32Array(count * 4);
    const lowRes = new Float32Array(count * 4 * LOW_RES_AREA);
    const noMask = new ort.Tensor('float32', new Float32Array(LOW_RES_AREA), [1, 1, LOW_RES, LOW_RES]);
    const hasMask = new ort.Tensor('float32', new Float32Array([0]), [1]);
    const [h, w] = embedding.originalSize;
    const origSize = new ort.Tensor('float32', new Float32Array([h, w]), [2]);
    for (let i = 0; i < count; i++) {
      const out = await this.runDecoder({
        image_embeddings: embedding.tensor,
        point_coords: new ort.Tensor('float32', pointCoords.slice(i * 4, i * 4 + 4), [1, 2, 2]),
        point_labels: new ort.Tensor('float32', pointLabels.slice(i * 2, i * 2 + 2), [1, 2]),
        mask_input: noMask,
        has_mask_input: hasMask,
        orig_im_size: origSize,
      });
      iou.set(out.iou_predictions!.data as Float32Array, i * 4);
      lowRes.set(out.low_res_masks!.data as Float32Array, i * 4 * LOW_RES_AREA);
    }
    return { count, iou, lowRes };
  }

  /**
   * One prompt through the click decoder, for the outputs every caller reads (not `masks`: see
   * Prediction). The folded decoder takes no `orig_im_size`; it is dropped for it.
   */
  private runDecoder(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
    const taken = Object.fromEntries(
      Object.entries(feeds).filter(([name]) => this.decoder.inputNames.includes(name)),
    );
    return this.decoder.run(taken, [...DECODER_OUTPUTS]);
  }

  private zeroMasks(count: number): Float32Array {
    if (this.zeros.length < count * LOW_RES_AREA) this.zeros = new Float32Array(count * LOW_RES_AREA);
    return this.zeros.subarray(0, count * LOW_RES_AREA);
  }

  async release(): Promise<void> {
    const batched = this.batchedDecoder === this.decoder ? undefined : this.batchedDecoder;
    await Promise.all([this.encoder.release(), this.decoder.release(), batched?.release()]);
  }
}

export function sessionOptions(settings: SessionSettings): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: settings.executionProvider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    graphOptimizationLevel: 'all',
  };
  if (settings.intraOpThreads) options.intraOpNumThreads = settings.intraOpThreads;
  if (settings.interOpThreads) options.interOpNumThreads = settings.interOpThreads;
  return options;
}
