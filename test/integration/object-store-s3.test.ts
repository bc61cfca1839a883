// The s3:// object store against the real S3-compatible server of the dev stack (versitygw):
// paging, multipart, conditional writes and the typed errors, with no mocks anywhere.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import pLimit from 'p-limit';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AccessDeniedError,
  BucketNotFoundError,
  InvalidCredentialsError,
  InvalidKeyError,
  ObjectNotFoundError,
  S3ObjectStore,
  openObjectStore,
} from '../../lib/object-store.ts';
import { storeOptionsFor, testStack, uniqueTestPrefix } from '../helpers/stack.ts';

const { s3 } = testStack();
const s3Options = storeOptionsFor(testStack()).s3!;
const runPrefix = uniqueTestPrefix('object-store-test');
const rootUri = `s3://${s3.bucket}/${runPrefix}`;
const store = openObjectStore(rootUri, { s3: s3Options });
const MiB = 1024 * 1024;

afterAll(async () => {
  const limit = pLimit(32);
  const keys: string[] = [];
  for await (const key of store.listKeys()) keys.push(key);
  await Promise.all(keys.map((key) => limit(() => store.delete(key))));
  await store.close();
});

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** `mib` MiB of random bytes as a stream of 1 MiB chunks, hashed as they are produced. */
function randomStream(mib: number): { stream: Readable; sha256: () => string } {
  const hash = createHash('sha256');
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let i = 0; i < mib; i++) {
      const chunk = randomBytes(MiB);
      hash.update(chunk);
      yield chunk;
    }
  }
  return { stream: Readable.from(chunks()), sha256: () => hash.digest('hex') };
}

async function sha256Of(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

describe('s3:// basics', () => {
  it('opens an S3ObjectStore rooted at the prefix', () => {
    expect(store).toBeInstanceOf(S3ObjectStore);
    expect(store.rootUri).toBe(`${rootUri}/`);
    expect(store.uri('a/b.json')).toBe(`${rootUri}/a/b.json`);
  });

  it('round-trips bytes, strings and streams, with head and exists', async () => {
    await store.put('basic/bytes.bin', Buffer.from([0, 1, 2, 255]));
    await store.put('basic/text.json', '{"héllo":1}', { contentType: 'application/json' });
    await store.put('basic/stream.bin', Readable.from([Buffer.from('ab'), Buffer.from('cd')]));

    expect([...(await store.get('basic/bytes.bin'))]).toEqual([0, 1, 2, 255]);
    expect((await store.get('basic/text.json')).toString()).toBe('{"héllo":1}');
    expect((await sha256Of(await store.getStream('basic/stream.bin'))).bytes).toBe(4);

    const head = await store.head('basic/text.json');
    expect(head).toMatchObject({ size: Buffer.byteLength('{"héllo":1}'), contentType: 'application/json' });
    expect(head?.lastModified).toBeInstanceOf(Date);
    expect(head?.etag).toBeTruthy();
    expect(await store.exists('basic/bytes.bin')).toBe(true);
    expect(await store.head('basic/missing')).toBeUndefined();
    expect(await store.exists('basic/missing')).toBe(false);

    await store.delete('basic/bytes.bin');
    expect(await store.exists('basic/bytes.bin')).toBe(false);
    await store.delete('basic/bytes.bin'); // deleting twice is fine, as on S3
  });

  it('refuses keys that are not portable to file://', async () => {
    await expect(store.put('../outside', 'x')).rejects.toThrow(InvalidKeyError);
    await expect(store.get('/abs')).rejects.toThrow(InvalidKeyError);
  });
});

describe('s3:// listing', () => {
  it('lists 2,500 keys across three pages of 1,000, sorted, relative to the root', async () => {
    const keys = Array.from({ length: 2500 }, (_, i) => `many/${String(i).padStart(5, '0')}.txt`);
    const limit = pLimit(32);
    await Promise.all(keys.map((key) => limit(() => store.put(key, key))));
    await store.put('many-sibling/not-listed', 'x');

    const pages = await collect(store.list('many/'));
    expect(pages.map((p) => p.length)).toEqual([1000, 1000, 500]);
    const listed = pages.flat();
    expect(listed.map((i) => i.key)).toEqual(keys);
    expect(listed[0]).toMatchObject({ key: 'many/00000.txt', size: 'many/00000.txt'.length });

    expect(await collect(store.listKeys('many/0249'))).toHaveLength(10);
    const smallPages = await collect(store.list('many/000', { pageSize: 40 }));
    expect(smallPages.map((p) => p.length)).toEqual([40, 40, 20]);
    expect(await collect(store.list('nothing-here/'))).toEqual([]);

    // A listing resumed after a key (S3 StartAfter) goes on with the next one, across pages.
    const resumed = await collect(store.listKeys('many/', { startAfter: 'many/01499.txt' }));
    expect(resumed).toEqual(keys.slice(1500));
  });
});

describe('s3:// multipart', () => {
  it('round-trips 64 MiB streamed through a multipart upload, verified by sha256', async () => {
    const source = randomStream(64);
    await store.put('big/64mib.bin', source.stream, { contentType: 'application/octet-stream' });

    const head = await store.head('big/64mib.bin');
    expect(head?.size).toBe(64 * MiB);
    // S3 marks multipart objects with an ETag of the form "<md5 of part md5s>-<part count>".
    expect(head?.etag).toMatch(/-\d+"?$/);

    const back = await sha256Of(await store.getStream('big/64mib.bin'));
    expect(back.bytes).toBe(64 * MiB);
    expect(back.sha256).toBe(source.sha256());
  });
});

describe('s3:// putIfAbsent', () => {
  it('writes once, then refuses without changing the object', async () => {
    expect(await store.putIfAbsent('cond/small', 'first')).toBe(true);
    expect(await store.putIfAbsent('cond/small', 'second')).toBe(false);
    expect((await store.get('cond/small')).toString()).toBe('first');
  });

  it('is conditional for multipart bodies too', async () => {
    const first = randomBytes(20 * MiB);
    expect(await store.putIfAbsent('cond/big', first)).toBe(true);
    expect(await store.putIfAbsent('cond/big', randomBytes(20 * MiB))).toBe(false);
    expect((await store.get('cond/big')).equals(first)).toBe(true);
  });

  it('lets exactly one of several concurrent writers win', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => store.putIfAbsent('cond/race', `writer ${i}`)),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
    expect((await store.get('cond/race')).toString()).toBe(`writer ${results.indexOf(true)}`);
  });
});

describe('s3:// typed errors', () => {
  it('a missing key is ObjectNotFoundError naming the object URI', async () => {
    const uri = `${rootUri}/errors/missing.json`;
    await expect(store.get('errors/missing.json')).rejects.toThrow(ObjectNotFoundError);
    await expect(store.get('errors/missing.json')).rejects.toThrow(`object not found: ${uri}`);
    await expect(store.getStream('errors/missing.json')).rejects.toThrow(ObjectNotFoundError);
  });

  it('a missing bucket is BucketNotFoundError naming the bucket, for every operation', async () => {
    const bucket = `sae-missing-${randomUUID().slice(0, 8)}`;
    const missing = openObjectStore(`s3://${bucket}/x`, { s3: s3Options });
    try {
      await expect(missing.get('k')).rejects.toThrow(BucketNotFoundError);
      await expect(missing.get('k')).rejects.toThrow(`bucket not found: s3://${bucket}`);
      await expect(missing.getStream('k')).rejects.toThrow(BucketNotFoundError);
      await expect(missing.head('k')).rejects.toThrow(BucketNotFoundError);
      await expect(missing.exists('k')).rejects.toThrow(BucketNotFoundError);
      await expect(missing.put('k', 'x')).rejects.toThrow(BucketNotFoundError);
      await expect(collect(missing.list())).rejects.toThrow(BucketNotFoundError);
    } finally {
      await missing.close();
    }
  });

  it.each([
    ['a wrong secret', { secretAccessKey: 'not-the-secret' }],
    ['an unknown access key', { accessKeyId: 'no-such-user' }],
  ])('%s is InvalidCredentialsError (an AccessDeniedError) for every operation', async (_, override) => {
    const wrong = openObjectStore(rootUri, { s3: { ...s3Options, ...override } });
    try {
      await store.put('errors/exists', 'x');
      const operations = [
        () => wrong.get('errors/exists'),
        () => wrong.getStream('errors/exists'),
        () => wrong.head('errors/exists'),
        () => wrong.put('errors/new', 'x'),
        () => wrong.putIfAbsent('errors/new', 'x'),
        () => collect(wrong.list()),
        () => wrong.delete('errors/exists'),
      ];
      for (const operation of operations) {
        await expect(operation()).rejects.toThrow(InvalidCredentialsError);
      }
      await expect(wrong.get('errors/exists')).rejects.toThrow(AccessDeniedError);
      await expect(wrong.get('errors/exists')).rejects.toThrow(`${rootUri}/errors/exists`);
      expect(await store.exists('errors/exists')).toBe(true);
      expect(await store.exists('errors/new')).toBe(false);
    } finally {
      await wrong.close();
    }
  });
});

describe('s3:// configuration', () => {
  it('takes the endpoint from SAE_S3_ENDPOINT when the options leave it out', async () => {
    const saved = process.env.SAE_S3_ENDPOINT;
    process.env.SAE_S3_ENDPOINT = s3.endpoint;
    try {
      const fromEnv = openObjectStore(rootUri, {
        s3: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      });
      await fromEnv.put('config/env', 'via env');
      expect((await store.get('config/env')).toString()).toBe('via env');
      await fromEnv.close();
    } finally {
      if (saved === undefined) delete process.env.SAE_S3_ENDPOINT;
      else process.env.SAE_S3_ENDPOINT = saved;
    }
  });
});
