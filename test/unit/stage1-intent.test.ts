// lib/stage1/intent.ts with a COCO intent: the simulated annotators' masks come from a file that is
// streamed on every `entries` call, so the intent reads it for many images at once and keeps them,
// and one image's malformed masks fail only that image.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { ENTRIES_PER_READ, openIntent } from '../../lib/stage1/intent.ts';

/** A StoreCache that counts how often the COCO file is streamed. */
class CountingStores extends StoreCache {
  streams = 0;

  override open(rootUri: string): ObjectStore {
    const store = super.open(rootUri);
    return new Proxy(store, {
      get: (target, prop, receiver) => {
        if (prop === 'getStream') {
          return (key: string) => {
            this.streams++;
            return target.getStream(key);
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }
}

const W = 8;
const H = 6;

/** Image i has one mask: its row i mod H, as an uncompressed RLE (column-major counts). */
function coco(images: number, broken: number[] = []) {
  return {
    images: Array.from({ length: images }, (_, i) => ({
      id: i,
      file_name: `img-${i}.jpg`,
      width: W,
      height: H,
    })),
    annotations: Array.from({ length: images }, (_, i) => {
      const row = i % H;
      const counts = [row];
      for (let x = 0; x < W - 1; x++) counts.push(1, H - 1);
      counts.push(1, H - 1 - row);
      return {
        id: 100 + i,
        image_id: i,
        segmentation: broken.includes(i) ? { size: [H, W], counts: 'not an RLE' } : { size: [H, W], counts },
      };
    }),
  };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sae-intent-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function intentOver(file: string, json: unknown) {
  await writeFile(join(dir, file), JSON.stringify(json));
  const stores = new CountingStores();
  const intent = await openIntent(stores, {
    format: 'coco',
    uri: pathToFileURL(join(dir, file)).href,
    ignoreValue: null,
  });
  stores.streams = 0; // opening reads the image list once
  return { stores, intent };
}

describe('a COCO intent', () => {
  it('reads the file once for many images, not once per image, and gives each its own masks', async () => {
    const count = ENTRIES_PER_READ + 10;
    const { stores, intent } = await intentOver('many.json', coco(count));
    const picks = [0, 1, 5, 500, ENTRIES_PER_READ - 1];
    const masks = await Promise.all(picks.map((i) => intent.masksFor(`img-${i}.jpg`, H, W, 0)));
    for (const [k, i] of picks.entries()) {
      expect(masks[k]).toHaveLength(1);
      const mask = masks[k]![0]!;
      // Row-major: the mask is row i mod H.
      const rows = [...mask].flatMap((v, p) => (v ? [Math.floor(p / W)] : []));
      expect(new Set(rows), `image ${i}`).toEqual(new Set([i % H]));
      expect(rows).toHaveLength(W);
    }
    expect(stores.streams).toBe(1);
    // An image past the first read's images: one more read.
    await intent.masksFor(`img-${count - 1}.jpg`, H, W, 0);
    await intent.masksFor(`img-${count - 2}.jpg`, H, W, 0);
    expect(stores.streams).toBe(2);
    expect(await intent.masksFor('not-in-the-reference.jpg', H, W, 0)).toEqual([]);
  });

  it('fails an image whose masks are malformed, and only it, naming the annotation', async () => {
    const { intent } = await intentOver('broken.json', coco(20, [7]));
    await expect(intent.masksFor('img-7.jpg', H, W, 0)).rejects.toThrow(/annotation 107/);
    const masks = await intent.masksFor('img-3.jpg', H, W, 0);
    expect(masks).toHaveLength(1);
    expect(await intent.masksFor('img-8.jpg', H, W, 0)).toHaveLength(1);
  });
});
