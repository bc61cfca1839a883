// file:///abs/dir backend: the embedded default for laptops. Keys map to files under the root dir.
// Writes go to a temp file in the target's directory and are then renamed (put) or hard-linked
// (putIfAbsent) into place, so a reader sees the old object, the new one, or none, never a torn one.
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { link, mkdir, open, readFile, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import {
  AccessDeniedError,
  InvalidKeyError,
  InvalidStoreUriError,
  ObjectNotFoundError,
  ObjectStoreError,
} from './errors.ts';
import { assertValidKey, assertValidPrefix, compareKeys, pageSizeOf } from './keys.ts';
import type { ListOptions, ObjectBody, ObjectHead, ObjectInfo, ObjectStore, PutOptions } from './types.ts';

/** Temp files are hidden from list() and keys may not use this name, so the two never mix. */
const TEMP_PREFIX = '.sae-tmp-';
/** A concurrent delete may prune the directory we are about to write into; retrying recreates it. */
const WRITE_ATTEMPTS = 5;

export class FileObjectStore implements ObjectStore {
  readonly rootUri: string;
  private readonly rootDir: string;

  constructor(rootDir: string) {
    if (!path.isAbsolute(rootDir)) {
      throw new InvalidStoreUriError(rootDir, 'the root must be an absolute path');
    }
    this.rootDir = path.resolve(rootDir);
    this.rootUri = pathToFileURL(this.rootDir + path.sep).href;
  }

  uri(key: string): string {
    if (key === '') return this.rootUri;
    return pathToFileURL(this.pathOf(key)).href;
  }

  async get(key: string): Promise<Buffer> {
    const file = this.pathOf(key);
    try {
      return await readFile(file);
    } catch (err) {
      throw this.readError(err, key);
    }
  }

  async getStream(key: string): Promise<Readable> {
    const file = this.pathOf(key);
    // Open now so a missing key fails here rather than as a later 'error' event on the stream.
    const handle = await open(file, 'r').catch((err: unknown) => {
      throw this.readError(err, key);
    });
    const isFile = await handle.stat().then(
      (info) => info.isFile(),
      () => false,
    );
    if (!isFile) {
      await handle.close();
      throw new ObjectNotFoundError(this.uri(key));
    }
    return handle.createReadStream();
  }

  async put(key: string, body: ObjectBody, _options?: PutOptions): Promise<void> {
    const file = this.pathOf(key);
    await this.writeVia(key, file, body, async (temp) => {
      await rename(temp, file);
    });
  }

  async putIfAbsent(key: string, body: ObjectBody, _options?: PutOptions): Promise<boolean> {
    const file = this.pathOf(key);
    // link() fails with EEXIST if the name exists, atomically, and only ever exposes a complete file.
    return this.writeVia(key, file, body, async (temp) => {
      try {
        await link(temp, file);
        return true;
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
        const existing = await stat(file).catch(() => undefined);
        if (existing?.isDirectory()) throw this.conflictError(key);
        return false;
      }
    });
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    const file = this.pathOf(key);
    try {
      const info = await stat(file);
      return info.isFile() ? { size: info.size, lastModified: info.mtime } : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fsError(err, key, 'head');
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  async *list(prefix = '', options: ListOptions = {}): AsyncIterable<ObjectInfo[]> {
    assertValidPrefix(prefix, this.rootUri);
    const pageSize = pageSizeOf(options);
    // S3 prefixes are string prefixes: walk the deepest directory the prefix fully names and filter
    // its entries by the remaining partial name.
    const cut = prefix.lastIndexOf('/') + 1;
    let page: ObjectInfo[] = [];
    for await (const info of this.walk(prefix.slice(0, cut), prefix.slice(cut))) {
      if (options.startAfter !== undefined && compareKeys(info.key, options.startAfter) <= 0) continue;
      page.push(info);
      if (page.length >= pageSize) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  async *listKeys(prefix = '', options?: ListOptions): AsyncIterable<string> {
    for await (const page of this.list(prefix, options)) {
      for (const info of page) yield info.key;
    }
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    try {
      await unlink(file);
    } catch (err) {
      // Missing key, or a key that is really a directory: nothing to delete, as on S3.
      if (isMissing(err) || errnoOf(err) === 'EISDIR') return;
      throw this.fsError(err, key, 'delete');
    }
    await this.pruneEmptyDirs(path.dirname(file));
  }

  async close(): Promise<void> {}

  /** Absolute path of a key, after refusing keys that could escape the root or hit a temp file. */
  private pathOf(key: string): string {
    assertValidKey(key, this.rootUri);
    const segments = key.split('/');
    if (segments.some((s) => s.startsWith(TEMP_PREFIX))) {
      throw new InvalidKeyError(this.rootUri, key, `segments starting with ${TEMP_PREFIX} are reserved`);
    }
    const file = path.join(this.rootDir, ...segments);
    // Belt and braces: validation already rules this out.
    const relative = path.relative(this.rootDir, file);
    if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
      throw new InvalidKeyError(this.rootUri, key, 'resolves outside the store root');
    }
    return file;
  }

  /** Writes body to a fresh temp file next to the key's file, hands it to `publish`, then cleans up. */
  private async writeVia<T>(
    key: string,
    file: string,
    body: ObjectBody,
    publish: (temp: string) => Promise<T>,
  ): Promise<T> {
    const dir = path.dirname(file);
    const temp = path.join(dir, TEMP_PREFIX + randomBytes(8).toString('hex'));
    try {
      await writeTemp(dir, temp, body);
      return await publish(temp);
    } catch (err) {
      if (err instanceof ObjectStoreError) throw err;
      if (['EISDIR', 'ENOTDIR', 'EEXIST'].includes(errnoOf(err) ?? '')) throw this.conflictError(key);
      throw this.fsError(err, key, 'put');
    } finally {
      // After rename the temp name is gone (ENOENT); after link or a failure it must be removed.
      await unlink(temp).catch(() => undefined);
    }
  }

  /** Removes directories left empty by a delete, up to (not including) the root, as S3 has no dirs. */
  private async pruneEmptyDirs(dir: string): Promise<void> {
    while (dir.startsWith(this.rootDir + path.sep)) {
      try {
        await rmdir(dir);
      } catch {
        return; // not empty (ENOTEMPTY) or already gone: either way stop here
      }
      dir = path.dirname(dir);
    }
  }

  /** Entries of one directory in S3 key order, recursing into subdirectories. */
  private async *walk(dirKey: string, namePrefix: string): AsyncGenerator<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(path.join(this.rootDir, dirKey), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw this.fsError(err, dirKey, 'list');
    }
    const children = await this.sortedChildren(dirKey, entries, namePrefix);
    for (const child of children) {
      const key = dirKey + child.name;
      if (child.isDir) {
        yield* this.walk(key + '/', '');
        continue;
      }
      const info = await stat(path.join(this.rootDir, key)).catch(() => undefined);
      if (info?.isFile()) yield { key, size: info.size, lastModified: info.mtime };
    }
  }

  /**
   * A directory 'a' sorts as 'a/' so that, e.g., the file 'a-b' comes before everything under 'a/',
   * exactly as the flat S3 key space orders them.
   */
  private async sortedChildren(
    dirKey: string,
    entries: Dirent[],
    namePrefix: string,
  ): Promise<{ name: string; isDir: boolean }[]> {
    const children: { name: string; isDir: boolean; sortKey: string }[] = [];
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_PREFIX) || !entry.name.startsWith(namePrefix)) continue;
      let isDir = entry.isDirectory();
      if (entry.isSymbolicLink()) {
        const target = await stat(path.join(this.rootDir, dirKey, entry.name)).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
      }
      children.push({ name: entry.name, isDir, sortKey: isDir ? entry.name + '/' : entry.name });
    }
    return children.sort((a, b) => compareKeys(a.sortKey, b.sortKey));
  }

  private readError(err: unknown, key: string): ObjectStoreError {
    if (isMissing(err) || errnoOf(err) === 'EISDIR') return new ObjectNotFoundError(this.uri(key), err);
    return this.fsError(err, key, 'get');
  }

  /** 'a' and 'a/b' can both be S3 keys, but not both be files. */
  private conflictError(key: string): InvalidKeyError {
    return new InvalidKeyError(
      this.rootUri,
      key,
      'clashes with an existing key: a file:// store cannot hold both "x" and "x/..." keys',
    );
  }

  private fsError(err: unknown, key: string, op: string): ObjectStoreError {
    const uri = key === '' ? this.rootUri : pathToFileURL(path.join(this.rootDir, key)).href;
    const code = errnoOf(err);
    if (code === 'EACCES' || code === 'EPERM') return new AccessDeniedError(uri, `${op}: ${code}`, err);
    const message = err instanceof Error ? err.message : String(err);
    // Disk full or too many open files may clear up; a retry is worth it.
    const retryable = code === 'ENOSPC' || code === 'EMFILE' || code === 'ENFILE' || code === 'EBUSY';
    return new ObjectStoreError(`${op} ${uri} failed: ${message}`, { uri, retryable, cause: err });
  }
}

async function writeTemp(dir: string, temp: string, body: ObjectBody): Promise<void> {
  const handle = await openTemp(dir, temp);
  if (body instanceof Readable) {
    await pipeline(body, handle.createWriteStream()); // the stream closes the handle, also on error
    return;
  }
  try {
    await handle.writeFile(body);
  } finally {
    await handle.close();
  }
}

/**
 * Creates the temp file exclusively. A concurrent delete may prune the directory between mkdir and
 * open; the open then fails with ENOENT before any of the body was consumed, so it is safe to retry.
 */
async function openTemp(dir: string, temp: string): Promise<FileHandle> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dir, { recursive: true });
    try {
      return await open(temp, 'wx');
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT' || attempt >= WRITE_ATTEMPTS) throw err;
    }
  }
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** ENOTDIR: a parent of the key is a file, so the key cannot exist. */
function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}
