// Full object URIs (s3://bucket/a/b.jpg, file:///data/a/b.jpg) for things that live anywhere, such
// as images listed in a manifest. Splits a URI into a store root and a key, and keeps one open
// store per root so that a shard of 1,000 images does not open 1,000 S3 clients.
import {
  openObjectStore,
  InvalidStoreUriError,
  type ObjectStore,
  type ObjectStoreOptions,
} from '../object-store.ts';

export interface ObjectLocation {
  rootUri: string;
  key: string;
}

/** s3://bucket/a/b.jpg → (s3://bucket, a/b.jpg); file:///data/a/b.jpg → (file:///data/a, b.jpg). */
export function splitObjectUri(uri: string): ObjectLocation {
  const s3 = /^s3:\/\/([^/]+)\/(.+)$/i.exec(uri);
  if (s3) return { rootUri: `s3://${s3[1]}`, key: s3[2]! };
  // A file's own folder is its root: no store is ever rooted at "/".
  const file = /^(file:\/\/(?:localhost)?\/(?:.*\/)?)([^/]+)$/i.exec(uri);
  if (file) return { rootUri: file[1]!, key: decodeURIComponent(file[2]!) };
  throw new InvalidStoreUriError(
    uri,
    'expected the URI of an object: s3://bucket/key or file:///absolute/path',
  );
}

/** Joins a store root URI and a relative key into one URI. */
export function joinUri(rootUri: string, key: string): string {
  return rootUri.replace(/\/+$/, '') + '/' + key.replace(/^\/+/, '');
}

export class StoreCache {
  private readonly stores = new Map<string, ObjectStore>();

  constructor(private readonly options: ObjectStoreOptions = {}) {}

  open(rootUri: string): ObjectStore {
    let store = this.stores.get(rootUri);
    if (!store) {
      store = openObjectStore(rootUri, this.options);
      this.stores.set(rootUri, store);
    }
    return store;
  }

  /** The store holding `uri` and the object's key in it. */
  locate(uri: string): { store: ObjectStore; key: string } {
    const { rootUri, key } = splitObjectUri(uri);
    return { store: this.open(rootUri), key };
  }

  async close(): Promise<void> {
    await Promise.all([...this.stores.values()].map((s) => s.close()));
    this.stores.clear();
  }
}
