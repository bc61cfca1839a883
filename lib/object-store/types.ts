import type { Readable } from 'node:stream';

/** What put() accepts. Strings are written as UTF-8. */
export type ObjectBody = Buffer | Uint8Array | string | Readable;

export interface PutOptions {
  /** Stored as Content-Type on S3; file:// does not keep it. */
  contentType?: string;
}

export interface ObjectHead {
  size: number;
  etag?: string;
  lastModified?: Date;
  contentType?: string;
}

export interface ObjectInfo {
  /** Relative to the store root, '/'-separated, the same string you would pass to get(). */
  key: string;
  size: number;
  etag?: string;
  lastModified?: Date;
}

export interface ListOptions {
  /** Keys per page; S3 caps this at 1000, which is also the default. */
  pageSize?: number;
  /** Only keys that sort after this one (S3's StartAfter): resume a listing where it stopped. */
  startAfter?: string;
}

/**
 * One interface over s3://bucket/prefix and file:///abs/dir. Keys are relative to the store root
 * and use '/' as separator on both backends; list() returns them in S3 order (UTF-8 byte order).
 */
export interface ObjectStore {
  /** The store root as a URI, e.g. s3://bucket/prefix/ or file:///abs/dir/ */
  readonly rootUri: string;

  /** Full URI of a key (uri('') is the root). */
  uri(key: string): string;

  /** Whole object in memory; ObjectNotFoundError if missing. */
  get(key: string): Promise<Buffer>;

  /** Object as a stream; ObjectNotFoundError is thrown here, before any byte is read. */
  getStream(key: string): Promise<Readable>;

  /** Write (or overwrite) an object. Readers see the old or the new object, never a partial one. */
  put(key: string, body: ObjectBody, options?: PutOptions): Promise<void>;

  /**
   * Write only if no object with this key exists. Returns true if written, false if one existed.
   * Atomic against concurrent writers; UnsupportedOperationError if the backend cannot do it.
   */
  putIfAbsent(key: string, body: ObjectBody, options?: PutOptions): Promise<boolean>;

  /** Size and metadata, or undefined if the key does not exist. */
  head(key: string): Promise<ObjectHead | undefined>;

  exists(key: string): Promise<boolean>;

  /** Pages of objects whose key starts with `prefix` (a plain string prefix, as on S3), sorted. */
  list(prefix?: string, options?: ListOptions): AsyncIterable<ObjectInfo[]>;

  /** Convenience over list(): just the keys, one at a time. */
  listKeys(prefix?: string, options?: ListOptions): AsyncIterable<string>;

  /** Remove an object. Deleting a missing key is not an error (as on S3). */
  delete(key: string): Promise<void>;

  /** Release sockets (S3); the store must not be used afterwards. */
  close(): Promise<void>;
}
