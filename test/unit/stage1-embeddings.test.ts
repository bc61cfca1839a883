// lib/stage1/embeddings.ts on the reference model and a file:// run: each image's embedding once,
// reused on a retry, encoded again for another model or dtype, and a bad image reported, not fatal.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createStage1Activities, type EmbedImagesInput } from '../../activities/stage1.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import type { ObjectStore } from '../../lib/object-store.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { decodeEmbeddingFile } from '../../lib/sam/embedding-file.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { embedImages, type EmbedImage, type EmbedImagesResult } from '../../lib/stage1/embeddings.ts';
import { generateSynthDataset } from '../../lib/synth/dataset.ts';

const MODEL = path.resolve(import.meta.dirname, '../../models/sae-ref');
const RUN = 'round-test';

describe('embedImages', () => {
  let root: string;
  let out: ObjectStore;
  const stores = new StoreCache();
  let session: SamSession;
  let images: EmbedImage[];
  let encoded = 0;
  /** The real session, counting encoder runs. */
  let counting: Pick<SamSession, 'modelId' | 'embed'>;

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'sae-embed-'));
    const rootUri = pathToFileURL(root).href;
    out = stores.open(`${rootUri}/out`);
    const photos = stores.open(`${rootUri}/photos`);
    await generateSynthDataset({ images: 2, seed: 99, write: (k, b) => photos.put(k, Buffer.from(b)) });
    await photos.put('images/broken.jpg', Buffer.from('not a jpeg at all'));
    images = [
      { id: 1, uri: `${rootUri}/photos/images/synth-000001.jpg` },
      { id: 2, uri: `${rootUri}/photos/images/broken.jpg` },
      { id: 3, uri: `${rootUri}/photos/images/synth-000002.jpg` },
      { id: 4, uri: `${rootUri}/photos/images/gone.jpg` },
    ];
    session = await SamSession.load(MODEL);
    counting = {
      modelId: session.modelId,
      embed: (image) => {
        encoded += 1;
        return session.embed(image);
      },
    };
  }, 60_000);
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it(
    'encodes each image once, reports bad ones, and a retry reuses what is stored',
    { timeout: 120_000 },
    async () => {
      const progress: number[] = [];
      const first = await embedImages(out, stores, counting, {
        runId: RUN,
        images,
        dtype: 'float16',
        onProgress: (done) => progress.push(done),
      });
      expect(first.embedded).toBe(2);
      expect(first.reused).toBe(0);
      expect(first.failed.map((f) => f.id)).toEqual([2, 4]);
      expect(first.failed[0]!.error).toMatch(/broken\.jpg/);
      expect(first.failed[1]!.error).toBe(`${images[3]!.uri} does not exist`);
      expect(progress).toEqual([1, 2, 3, 4]);
      // The images that have their embedding, with their size: what a task needs.
      const sizes = first.images.map((i) => [i.id, i.width, i.height]);
      expect(sizes).toHaveLength(2);
      expect(sizes.map(([id]) => id)).toEqual([1, 3]);
      expect(encoded).toBe(2);

      const stored = decodeEmbeddingFile(await out.get(runLayout.embedding(RUN, 1)), 'e.bin');
      expect(stored.header).toMatchObject({
        model: session.modelId,
        dtype: 'float16',
        shape: [1, 256, 64, 64],
      });

      const again = await embedImages(out, stores, counting, { runId: RUN, images, dtype: 'float16' });
      expect(again).toMatchObject({ embedded: 0, reused: 2 });
      expect(again.images).toEqual(first.images); // sizes read back from the stored headers
      expect(encoded).toBe(2);
    },
  );

  it(
    'runs as the embedImages activity, heartbeating per image, on a session per model',
    { timeout: 120_000 },
    async () => {
      const loads: string[] = [];
      const activities = createStage1Activities({
        sessionFor: async (modelUri) => {
          loads.push(modelUri);
          return session;
        },
      });
      const env = new MockActivityEnvironment();
      const beats: unknown[] = [];
      env.on('heartbeat', (details: unknown) => beats.push(details));
      const input: EmbedImagesInput = {
        runId: 'activity-run',
        outputUri: out.uri(''),
        modelUri: 'file:///models/sae-ref',
        images: images.slice(0, 2),
        dtype: 'float16',
      };
      const result = (await env.run(activities.embedImages, input)) as EmbedImagesResult;
      expect(result).toMatchObject({ embedded: 1, reused: 0 });
      expect(result.failed.map((f) => f.id)).toEqual([2]);
      expect(beats).toEqual([
        { done: 1, images: 2 },
        { done: 2, images: 2 },
      ]);
      expect(loads).toEqual(['file:///models/sae-ref']);
    },
  );

  it(
    'encodes again for another dtype or another model, and over a broken file',
    { timeout: 120_000 },
    async () => {
      const one = [images[0]!];
      const before = encoded;
      expect(
        await embedImages(out, stores, counting, { runId: RUN, images: one, dtype: 'float32' }),
      ).toMatchObject({
        embedded: 1,
      });
      const other = { ...counting, modelId: 'other@1' };
      expect(
        await embedImages(out, stores, other, { runId: RUN, images: one, dtype: 'float32' }),
      ).toMatchObject({
        embedded: 1,
      });
      await out.put(runLayout.embedding(RUN, 1), Buffer.from('SAEEMB01 garbage'));
      expect(
        await embedImages(out, stores, counting, { runId: RUN, images: one, dtype: 'float16' }),
      ).toMatchObject({
        embedded: 1,
      });
      expect(encoded - before).toBe(3);
    },
  );
});
