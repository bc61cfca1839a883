// Stage 2's activities: thin adapters over lib/stage2. Pre-fill runs on the inference pool (it
// loads SAM and the detector); keeping deleted and accepted pre-filled masks are small writes the
// annotation task makes in its own worker (local activities).
import { Context } from '@temporalio/activity';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { DetectorSessionFactory } from '../lib/detector/local-detector.ts';
import type { SamSessionFactory } from '../lib/sam/local-model.ts';
import type { PrefillSettings } from '../lib/stage2/prefill.ts';
import { prefillImages, type PrefillImagesResult } from '../lib/stage2/prefill-store.ts';
import { acceptPrefilledMasks, storePrefillRejection } from '../lib/stage2/prefill-review.ts';

export interface Stage2Deps {
  storeOptions?: ObjectStoreOptions;
  sessionFor: SamSessionFactory;
  detectorFor: DetectorSessionFactory;
}

export interface PrefillImagesInput {
  runId: string;
  outputUri: string;
  /** The SAM whose embeddings the round stored, and the detector that reads them. */
  modelUri: string;
  detectorUri: string;
  imageIds: number[];
  settings: PrefillSettings;
}

export function createStage2Activities(deps: Stage2Deps) {
  const stores = new StoreCache(deps.storeOptions ?? {});
  return {
    /** The detector's boxes → SAM's confident masks, one file per image (lib/stage2/prefill-store.ts). */
    async prefillImages(input: PrefillImagesInput): Promise<PrefillImagesResult & { detector: string }> {
      const ctx = Context.current();
      const sam = await deps.sessionFor(input.modelUri);
      const detector = await deps.detectorFor(input.detectorUri, sam);
      const result = await prefillImages(stores.open(input.outputUri), sam, detector, {
        runId: input.runId,
        imageIds: input.imageIds,
        settings: input.settings,
        onProgress: (done) => ctx.heartbeat({ done, images: input.imageIds.length }),
      });
      return { ...result, detector: detector.modelId };
    },

    /** Keeps a pre-filled mask an annotator deleted, with who and why. */
    async storePrefillRejection(input: {
      outputUri: string;
      runId: string;
      round: number;
      imageId: number;
      index: number;
      annotator: string;
      reason: string;
    }): Promise<{ stored: boolean }> {
      const { outputUri, ...rejection } = input;
      return storePrefillRejection(stores.open(outputUri), rejection);
    },

    /** The pre-filled masks nobody deleted, stored as the image's annotations when its task closes. */
    async acceptPrefilledMasks(input: {
      outputUri: string;
      runId: string;
      round: number;
      imageId: number;
      image: string;
      rejected: number[];
    }): Promise<{ accepted: number; rejected: number }> {
      const { outputUri, ...task } = input;
      return acceptPrefilledMasks(stores.open(outputUri), task);
    },
  };
}

export type Stage2Activities = ReturnType<typeof createStage2Activities>;
