// Stage 1's activities on the inference pool: thin adapters over lib/stage1.
import { Context } from '@temporalio/activity';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { EmbeddingDtype } from '../lib/sam/embedding-file.ts';
import type { SamSessionFactory } from '../lib/sam/local-model.ts';
import type { SessionSettings } from '../lib/sam/session.ts';
import { storeAnnotation, type AnnotationRecord } from '../lib/stage1/annotations.ts';
import { embedImages, type EmbedImage, type EmbedImagesResult } from '../lib/stage1/embeddings.ts';

export interface EmbedImagesInput {
  runId: string;
  outputUri: string;
  modelUri: string;
  /** A batch of a round's images: one activity each, heartbeating per image. */
  images: EmbedImage[];
  dtype: EmbeddingDtype;
  maxPixels?: number;
  maxBytes?: number;
  onnx?: SessionSettings;
}

export interface Stage1Deps {
  storeOptions?: ObjectStoreOptions;
  sessionFor: SamSessionFactory;
}

export function createStage1Activities(deps: Stage1Deps) {
  const stores = new StoreCache(deps.storeOptions ?? {});
  return {
    /** Stores an accepted annotation once; the task workflow calls it before its submit returns. */
    async storeAnnotation(input: {
      outputUri: string;
      record: AnnotationRecord;
    }): Promise<{ stored: boolean }> {
      return storeAnnotation(stores.open(input.outputUri), input.record);
    },

    /** Writes each image's embedding once (a retry reuses what the last attempt stored). */
    async embedImages(input: EmbedImagesInput): Promise<EmbedImagesResult> {
      const ctx = Context.current();
      const session = await deps.sessionFor(input.modelUri, input.onnx);
      return embedImages(stores.open(input.outputUri), stores, session, {
        runId: input.runId,
        images: input.images,
        dtype: input.dtype,
        maxPixels: input.maxPixels,
        maxBytes: input.maxBytes,
        onProgress: (done) => ctx.heartbeat({ done, images: input.images.length }),
      });
    },
  };
}

export type Stage1Activities = ReturnType<typeof createStage1Activities>;
