// Stage 1's image embeddings, computed once per image and model on an inference worker and stored
// as runs/<run>/embeddings/<image-id>.bin (../sam/embedding-file.ts). The browser tool, the
// simulated annotators and decoder-only retraining read those files; none of them runs the encoder.
//
// Idempotent and resumable: an image whose file already holds this model's embedding in the asked
// dtype is not encoded again, so a retried batch redoes only what it had not written. An image that
// cannot be read or decoded is reported with its reason and the batch goes on.
import { ImageDecodeError, loadImage } from '../images/image-io.ts';
import { ObjectNotFoundError, type ObjectStore } from '../object-store.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { runLayout } from '../run-layout.ts';
import {
  embeddingFileOf,
  EmbeddingFileError,
  readEmbeddingHeader,
  type EmbeddingDtype,
} from '../sam/embedding-file.ts';
import type { SamSession } from '../sam/session.ts';

export interface EmbedImage {
  id: number;
  uri: string;
}

export interface EmbedImagesOptions {
  runId: string;
  images: readonly EmbedImage[];
  dtype: EmbeddingDtype;
  maxPixels?: number;
  maxBytes?: number;
  /** Called after each image with how many are done, e.g. to heartbeat. */
  onProgress?: (done: number) => void;
}

export interface EmbedImagesResult {
  /** The model that computed them ("name@version"), which assists the annotators. */
  model: string;
  embedded: number;
  /** Already stored for this model and dtype: not encoded again. */
  reused: number;
  /** Every image that has its embedding now, with its size (after EXIF rotation): a task's image. */
  images: (EmbedImage & { width: number; height: number })[];
  failed: { id: number; uri: string; error: string }[];
}

export async function embedImages(
  out: ObjectStore,
  stores: StoreCache,
  session: Pick<SamSession, 'modelId' | 'embed'>,
  opts: EmbedImagesOptions,
): Promise<EmbedImagesResult> {
  const result: EmbedImagesResult = {
    model: session.modelId,
    embedded: 0,
    reused: 0,
    images: [],
    failed: [],
  };
  for (const [done, image] of opts.images.entries()) {
    const key = runLayout.embedding(opts.runId, image.id);
    let size = await storedSize(out, key, session.modelId, opts.dtype);
    if (size) {
      result.reused += 1;
    } else {
      const outcome = await embedOne(out, stores, session, opts, image, key);
      if (typeof outcome === 'string') {
        result.failed.push({ id: image.id, uri: image.uri, error: outcome });
      } else {
        size = outcome;
        result.embedded += 1;
      }
    }
    if (size) result.images.push({ ...image, height: size[0], width: size[1] });
    opts.onProgress?.(done + 1);
  }
  return result;
}

/** Encodes one image and stores its file: its [h, w], or why not when the image is at fault. */
async function embedOne(
  out: ObjectStore,
  stores: StoreCache,
  session: Pick<SamSession, 'modelId' | 'embed'>,
  opts: EmbedImagesOptions,
  image: EmbedImage,
  key: string,
): Promise<[number, number] | string> {
  let bytes: Buffer;
  try {
    const { store, key: imageKey } = stores.locate(image.uri);
    bytes = await store.get(imageKey);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return `${image.uri} does not exist`;
    throw err; // storage down or denied: the batch is retried
  }
  let decoded;
  try {
    decoded = await loadImage(bytes, { name: image.uri, maxPixels: opts.maxPixels, maxBytes: opts.maxBytes });
  } catch (err) {
    if (err instanceof ImageDecodeError) return err.message;
    throw err;
  }
  const embedding = await session.embed(decoded);
  const file = embeddingFileOf(session.modelId, embedding, opts.dtype);
  await out.put(key, file, { contentType: 'application/octet-stream' });
  return [embedding.originalSize[0], embedding.originalSize[1]];
}

/**
 * The image's [h, w] when `key` holds its embedding by this model in this dtype, else undefined
 * (a broken file does not count: it is written again).
 */
async function storedSize(
  out: ObjectStore,
  key: string,
  model: string,
  dtype: EmbeddingDtype,
): Promise<[number, number] | undefined> {
  let bytes: Buffer;
  try {
    bytes = await out.get(key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
  try {
    const { header } = readEmbeddingHeader(bytes, out.uri(key));
    return header.model === model && header.dtype === dtype ? header.originalSize : undefined;
  } catch (err) {
    if (err instanceof EmbeddingFileError) return undefined;
    throw err;
  }
}
