// The file:// object store: the embedded default must behave like S3 (sorted flat key space,
// atomic writes, typed errors) so code tested on a laptop behaves the same against a bucket.
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  FileObjectStore,
  InvalidCredentialsError,
  InvalidKeyError,
  InvalidStoreUriError,
  ObjectNotFoundError,
  ObjectStoreError,
  openObjectStore,
  S3ObjectStore,
  type ObjectInfo,
  type ObjectStore,
} from '../../lib/object-store.ts';

let root: string;
let store: ObjectStore;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'sae-object-store-'));
  store = openObjectStore(pathToFileURL(root).href);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('openObjectStore', () => {
  it('opens file:// URIs and names keys with full URIs', () => {
    expect(store).toBeInstanceOf(FileObjectStore);
    expect(store.rootUri).toBe(pathToFileURL(root).href + '/');
    expect(store.uri('a/b c.json')).toBe(pathToFileURL(path.join(root, 'a', 'b c.json')).href);
    expect(store.uri('')).toBe(store.rootUri);
  });

  it('parses s3:// URIs without touching the network', async () => {
    const s3 = openObjectStore('s3://My-Bucket/runs/r1/', { s3: { endpoint: 'http://127.0.0.1:1' } });
    expect(s3).toBeInstanceOf(S3ObjectStore);
    expect(s3.rootUri).toBe('s3://My-Bucket/runs/r1/');
    expect(s3.uri('masks/a.json')).toBe('s3://My-Bucket/runs/r1/masks/a.json');
    expect(openObjectStore('s3://bucket').uri('k')).toBe('s3://bucket/k');
    expect(() => s3.uri('../x')).toThrow(InvalidKeyError);
    await s3.close();
  });

  it('wants both halves of an explicit S3 key pair', () => {
    expect(() => openObjectStore('s3://bucket', { s3: { accessKeyId: 'only-the-id' } })).toThrow(
      InvalidCredentialsError,
    );
  });

  it('refuses unknown schemes, bare paths and relative file URIs with a clear error', () => {
    expect(() => openObjectStore('gs://bucket/x')).toThrow(InvalidStoreUriError);
    expect(() => openObjectStore('gs://bucket/x')).toThrow(/unknown scheme "gs:".*s3:\/\/bucket\/prefix/);
    expect(() => openObjectStore('/tmp/data')).toThrow(/no scheme/);
    expect(() => openObjectStore('file:data')).toThrow(/absolute path/);
    expect(() => openObjectStore('s3://')).toThrow(/bucket/);
    expect(() => openObjectStore('s3://bucket/a/../b')).toThrow(InvalidStoreUriError);
  });
});

describe('file:// round trips', () => {
  it('writes and reads bytes, Uint8Array and strings', async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    await store.put('bin/a.bin', bytes);
    await store.put('bin/u8.bin', new Uint8Array([9, 8, 7]));
    await store.put('text/hello.txt', 'héllo wörld', { contentType: 'text/plain' });

    expect(await store.get('bin/a.bin')).toEqual(bytes);
    expect([...(await store.get('bin/u8.bin'))]).toEqual([9, 8, 7]);
    expect((await store.get('text/hello.txt')).toString('utf8')).toBe('héllo wörld');
  });

  it('streams in and out', async () => {
    const parts = Array.from({ length: 50 }, (_, i) => Buffer.alloc(10_000, i));
    await store.put('streams/big.bin', Readable.from(parts));

    const back = await readAll(await store.getStream('streams/big.bin'));
    // Buffer.equals, not toEqual: a deep compare of 500 kB byte by byte takes seconds.
    expect(back.equals(Buffer.concat(parts))).toBe(true);
  });

  it('overwrites with put and leaves no temp files behind', async () => {
    await store.put('k.txt', 'one');
    await store.put('k.txt', 'two');
    expect((await store.get('k.txt')).toString()).toBe('two');
    expect(await readdir(root)).toEqual(['k.txt']);
  });

  it('never lets a reader see a mix of two writes', async () => {
    const size = 4 * 1024 * 1024;
    await store.put('hot.bin', Buffer.alloc(size, 0));
    const writes = Promise.all([1, 2, 3, 4].map((fill) => store.put('hot.bin', Buffer.alloc(size, fill))));
    for (let i = 0; i < 10; i++) {
      const seen = await store.get('hot.bin');
      expect(seen.length).toBe(size);
      expect(seen.every((b) => b === seen[0])).toBe(true);
    }
    await writes;
  });

  it('does not publish a half-written object when the body stream fails', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('partial');
      throw new Error('source broke');
    }
    await expect(store.put('broken.bin', Readable.from(failing()))).rejects.toThrow(ObjectStoreError);
    expect(await store.exists('broken.bin')).toBe(false);
    expect(await readdir(root)).toEqual([]);
  });
});

describe('file:// head and exists', () => {
  it('reports size and modification time of existing objects only', async () => {
    await store.put('dir/obj', Buffer.alloc(1234));
    const head = await store.head('dir/obj');
    expect(head?.size).toBe(1234);
    expect(head?.lastModified).toBeInstanceOf(Date);
    expect(await store.exists('dir/obj')).toBe(true);

    expect(await store.head('dir/missing')).toBeUndefined();
    expect(await store.exists('dir/missing')).toBe(false);
    // 'dir' is a directory on disk but not an object.
    expect(await store.exists('dir')).toBe(false);
    // A parent that is a file, not a directory, is just "missing".
    expect(await store.exists('dir/obj/child')).toBe(false);
  });
});

describe('file:// list', () => {
  it('pages through nested directories in S3 key order', async () => {
    // '-' (0x2d) sorts before '/' (0x2f): 'a-b' must come before 'a/...' as on S3, although a
    // naive directory walk would visit the directory 'a' first.
    const keys = ['a/x/1', 'a/x/2', 'a/y', 'a-b', 'a.c', 'b', 'a/z/deep/er/key', 'a0', 'Z', 'é', 'a/x/10'];
    for (const key of keys) await store.put(key, key);
    const expected = [...keys].sort((p, q) => Buffer.compare(Buffer.from(p), Buffer.from(q)));

    const pages = await collect(store.list('', { pageSize: 3 }));
    expect(pages.map((p) => p.length)).toEqual([3, 3, 3, 2]);
    expect(pages.flat().map((i) => i.key)).toEqual(expected);
    const first = pages[0]![0] as ObjectInfo;
    expect(first.size).toBe(Buffer.byteLength(first.key));
  });

  it('treats the prefix as a plain string prefix', async () => {
    for (const key of [
      'runs/r1/masks/img1.json',
      'runs/r1/masks/img2.json',
      'runs/r1/masks-old/x',
      'runs/r10/a',
    ]) {
      await store.put(key, 'x');
    }
    expect(await collect(store.listKeys('runs/r1/masks/'))).toEqual([
      'runs/r1/masks/img1.json',
      'runs/r1/masks/img2.json',
    ]);
    expect(await collect(store.listKeys('runs/r1/mask'))).toEqual([
      'runs/r1/masks-old/x',
      'runs/r1/masks/img1.json',
      'runs/r1/masks/img2.json',
    ]);
    expect(await collect(store.listKeys('runs/r1'))).toHaveLength(4);
    expect(await collect(store.listKeys('nothing/here/'))).toEqual([]);
    await expect(collect(store.list('', { pageSize: 0 }))).rejects.toThrow(RangeError);
  });

  it('yields nothing for an empty or not yet created root', async () => {
    expect(await collect(store.list())).toEqual([]);
    const fresh = openObjectStore(pathToFileURL(path.join(root, 'not-created')).href);
    expect(await collect(fresh.list())).toEqual([]);
  });

  it('follows symlinks the way reads do', async () => {
    const outside = await mkdtemp(path.join(tmpdir(), 'sae-object-store-linked-'));
    try {
      await writeFile(path.join(outside, 'img.jpg'), 'jpg');
      await symlink(outside, path.join(root, 'images'));
      expect(await collect(store.listKeys())).toEqual(['images/img.jpg']);
      expect((await store.get('images/img.jpg')).toString()).toBe('jpg');
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});

describe('file:// delete', () => {
  it('removes the object, prunes emptied directories, and ignores missing keys', async () => {
    await store.put('a/b/c.txt', 'x');
    await store.put('a/keep.txt', 'y');
    await store.delete('a/b/c.txt');

    expect(await store.exists('a/b/c.txt')).toBe(false);
    expect(await readdir(path.join(root, 'a'))).toEqual(['keep.txt']);
    await store.delete('a/b/c.txt');
    await store.delete('never/was');

    // With 'a/b' pruned, 'a/b' can now be an object itself, as on S3.
    await store.put('a/b', 'now a file');
    expect((await store.get('a/b')).toString()).toBe('now a file');
  });
});

describe('file:// putIfAbsent', () => {
  it('writes once and refuses the second time without changing the object', async () => {
    expect(await store.putIfAbsent('locks/run-1', 'first')).toBe(true);
    expect(await store.putIfAbsent('locks/run-1', 'second')).toBe(false);
    expect((await store.get('locks/run-1')).toString()).toBe('first');
    expect(await readdir(path.join(root, 'locks'))).toEqual(['run-1']);
  });

  it('lets exactly one of many concurrent writers win', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.putIfAbsent('race', Readable.from([`writer ${i}`]))),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = results.indexOf(true);
    expect((await store.get('race')).toString()).toBe(`writer ${winner}`);
  });
});

describe('file:// errors', () => {
  it('throws ObjectNotFoundError naming the URI for a missing key', async () => {
    const missing = store.uri('no/such/key.json');
    await expect(store.get('no/such/key.json')).rejects.toThrow(ObjectNotFoundError);
    await expect(store.get('no/such/key.json')).rejects.toThrow(missing);
    await expect(store.getStream('no/such/key.json')).rejects.toThrow(ObjectNotFoundError);
    await store.put('dir/obj', 'x');
    await expect(store.get('dir')).rejects.toThrow(ObjectNotFoundError);
    await expect(store.getStream('dir')).rejects.toThrow(ObjectNotFoundError);
  });

  it.each([
    ['../escape', /escape the store root/],
    ['a/../../escape', /escape the store root/],
    ['a/..', /'\.\.'/],
    ['/etc/passwd', /relative to the store root/],
    ['a\0b', /NUL/],
    ['a//b', /empty segments/],
    ['a/./b', /'\.' segments/],
    ['dir/', /directory/],
    ['', /non-empty/],
    ['x'.repeat(1025), /1024/],
    ['.sae-tmp-1234', /reserved/],
  ])('refuses the key %j', async (key, reason) => {
    const attempt = store.put(key, 'x');
    await expect(attempt).rejects.toThrow(InvalidKeyError);
    await expect(store.put(key, 'x')).rejects.toThrow(reason);
    await expect(store.get(key)).rejects.toThrow(InvalidKeyError);
    await expect(store.putIfAbsent(key, 'x')).rejects.toThrow(InvalidKeyError);
    await expect(store.delete(key)).rejects.toThrow(InvalidKeyError);
    expect(await readdir(root)).toEqual([]);
  });

  it('refuses list prefixes that escape the root', async () => {
    await expect(collect(store.list('../'))).rejects.toThrow(InvalidKeyError);
    await expect(collect(store.list('a/../../'))).rejects.toThrow(InvalidKeyError);
  });

  it('explains a key that clashes with a directory of other keys', async () => {
    await store.put('a/b', 'x');
    await expect(store.put('a', 'y')).rejects.toThrow(/both "x" and "x\/\.\.\."/);
    await expect(store.putIfAbsent('a', 'y')).rejects.toThrow(InvalidKeyError);
    await expect(store.put('a/b/c', 'z')).rejects.toThrow(InvalidKeyError);
    expect((await store.get('a/b')).toString()).toBe('x');
  });
});
