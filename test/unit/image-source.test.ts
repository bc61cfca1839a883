// The image source: prefix listings, JSON-lines manifests and S3 Inventory-style CSV manifests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ImageSourceError,
  imageUris,
  type SourcedImage,
  uriFromInventoryCsv,
  uriFromJsonLine,
} from '../../lib/images/image-source.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';

let dir: string;
let root: string;
let stores: StoreCache;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sae-source-'));
  root = pathToFileURL(dir).href;
  stores = new StoreCache();
});
afterEach(async () => {
  await stores.close();
  rmSync(dir, { recursive: true, force: true });
});

async function collect(iterable: AsyncIterable<SourcedImage>): Promise<string[]> {
  const all: string[] = [];
  for await (const item of iterable) all.push(item.uri);
  return all;
}

describe('imageUris', () => {
  it('lists a prefix in S3 order, matching extensions case-insensitively', async () => {
    const store = stores.open(root);
    for (const key of ['b/2.PNG', 'a.jpg', 'b/1.jpeg', 'readme.md', 'noext']) await store.put(key, 'x');
    const uris = await collect(imageUris({ prefix: root, extensions: ['jpg', 'jpeg', 'png'] }, stores));
    expect(uris).toEqual([store.uri('a.jpg'), store.uri('b/1.jpeg'), store.uri('b/2.PNG')]);
  });

  it('reads a JSON-lines manifest relative to its folder and drops duplicates', async () => {
    const store = stores.open(root);
    await store.put(
      'lists/m.jsonl',
      ['"x/a.jpg"', '{"key": "x/b.jpg"}', '', '{"uri": "s3://bkt/c.jpg"}', '"x/a.jpg"'].join('\n'),
    );
    const uris = await collect(imageUris({ manifest: store.uri('lists/m.jsonl'), format: 'jsonl' }, stores));
    expect(uris).toEqual([store.uri('lists/x/a.jpg'), store.uri('lists/x/b.jpg'), 's3://bkt/c.jpg']);
  });

  it('resumes a prefix listing right after the last key handed out', async () => {
    const store = stores.open(root);
    for (const key of ['a.jpg', 'b.jpg', 'c/d.jpg', 'c/e.jpg', 'f.jpg']) await store.put(key, 'x');
    const source = { prefix: root, extensions: ['jpg'] };
    const all: SourcedImage[] = [];
    for await (const image of imageUris(source, stores)) all.push(image);
    expect(all[2]!.position).toEqual({ afterKey: 'c/d.jpg' });
    const rest = await collect(imageUris(source, stores, all[2]!.position));
    expect(rest).toEqual([store.uri('c/e.jpg'), store.uri('f.jpg')]);
  });

  it('resumes a manifest after its line, still dropping duplicates of earlier lines', async () => {
    const store = stores.open(root);
    await store.put('m.jsonl', ['"a.jpg"', '"b.jpg"', '"c.jpg"', '"a.jpg"', '"d.jpg"'].join('\n'));
    const source = { manifest: store.uri('m.jsonl'), format: 'jsonl' as const };
    const rest = await collect(imageUris(source, stores, { line: 2 }));
    expect(rest).toEqual([store.uri('c.jpg'), store.uri('d.jpg')]);
  });

  it('names the manifest line that is not JSON', async () => {
    const store = stores.open(root);
    await store.put('m.jsonl', '"a.jpg"\n{oops\n');
    await expect(
      collect(imageUris({ manifest: store.uri('m.jsonl'), format: 'jsonl' }, stores)),
    ).rejects.toThrow(/m\.jsonl line 2: not JSON/);
  });
});

describe('manifest lines', () => {
  it('decodes S3 Inventory CSV keys', () => {
    expect(uriFromInventoryCsv('"my-bucket","photos/a%20b%2Bc.jpg","1234"', 'l1')).toBe(
      's3://my-bucket/photos/a b+c.jpg',
    );
  });

  it('refuses CSV lines without a key', () => {
    expect(() => uriFromInventoryCsv('"only-bucket"', 'inv.csv line 3')).toThrow(ImageSourceError);
  });

  it('refuses JSON lines of the wrong shape', () => {
    expect(() => uriFromJsonLine('{"path": "a.jpg"}', 'file:///d', 'm line 1')).toThrow(/expected "key"/);
    expect(() => uriFromJsonLine('{"uri": "http://x/a.jpg"}', 'file:///d', 'm line 1')).toThrow(
      ImageSourceError,
    );
  });
});
