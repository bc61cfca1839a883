// Object storage behind one interface: s3://bucket/prefix (AWS S3 or an S3-compatible server) and
// file:///abs/dir (the embedded laptop default). Callers open a store from a URI and use keys
// relative to it; see lib/object-store/types.ts for the contract and errors.ts for what can go wrong.
import { fileURLToPath } from 'node:url';
import { InvalidStoreUriError } from './object-store/errors.ts';
import { FileObjectStore } from './object-store/file-store.ts';
import { S3ObjectStore, type S3Options } from './object-store/s3-store.ts';
import type { ObjectStore } from './object-store/types.ts';

export * from './object-store/errors.ts';
export type * from './object-store/types.ts';
export { FileObjectStore } from './object-store/file-store.ts';
export { S3ObjectStore, type S3Options } from './object-store/s3-store.ts';

export interface ObjectStoreOptions {
  /** Used for s3:// URIs only; anything left out falls back to env and the AWS defaults. */
  s3?: S3Options;
}

const SUPPORTED = 's3://bucket/prefix or file:///absolute/dir';

/** Opens the store rooted at `uri`. Throws InvalidStoreUriError for anything else. */
export function openObjectStore(uri: string, options: ObjectStoreOptions = {}): ObjectStore {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 's3') return openS3(uri, options.s3);
  if (scheme === 'file') return new FileObjectStore(fileRoot(uri));
  if (scheme === undefined) throw new InvalidStoreUriError(uri, `no scheme; expected ${SUPPORTED}`);
  throw new InvalidStoreUriError(uri, `unknown scheme "${scheme}:"; expected ${SUPPORTED}`);
}

/** s3://bucket/a/b → bucket "bucket", prefix "a/b/". Parsed by hand: URL would lowercase the bucket. */
function openS3(uri: string, options: S3Options | undefined): S3ObjectStore {
  if (!uri.toLowerCase().startsWith('s3://')) throw new InvalidStoreUriError(uri, `expected ${SUPPORTED}`);
  const rest = uri.slice('s3://'.length);
  const slash = rest.indexOf('/');
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  const prefix = slash === -1 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(bucket)) {
    throw new InvalidStoreUriError(uri, 'missing or malformed bucket name');
  }
  if (prefix !== '' && prefix.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new InvalidStoreUriError(uri, "the prefix must not contain empty, '.' or '..' segments");
  }
  return new S3ObjectStore(bucket, prefix, options);
}

/** file:///abs/dir (or file://localhost/abs/dir) → /abs/dir, percent-decoded. */
function fileRoot(uri: string): string {
  if (!/^file:\/\/(localhost)?\//i.test(uri)) {
    throw new InvalidStoreUriError(uri, 'a file URI needs an absolute path: file:///absolute/dir');
  }
  try {
    return fileURLToPath(uri);
  } catch (err) {
    throw new InvalidStoreUriError(uri, err instanceof Error ? err.message : String(err));
  }
}
