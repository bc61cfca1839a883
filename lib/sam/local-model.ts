// Model packages where onnxruntime can open them: a local folder. A worker's SAM sessions, for
// stage 3's segmenter and for stage 1's embeddings, come through here.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from '../../infra/tools.ts';
import { openObjectStore, type ObjectStoreOptions } from '../object-store.ts';
import { ModelPackageError } from './model-package.ts';
import { SamSession, type SessionSettings } from './session.ts';

/** A folder holding the package: file:// as it is; s3:// copied once into the local cache. */
export async function localModelDir(
  modelUri: string,
  storeOptions: ObjectStoreOptions = {},
): Promise<string> {
  if (modelUri.startsWith('file://')) return fileURLToPath(modelUri);
  if (!modelUri.startsWith('s3://')) return modelUri; // a plain local path
  const target = join(cacheDir(), 'models', createHash('sha256').update(modelUri).digest('hex').slice(0, 16));
  if (existsSync(join(target, 'model.json'))) return target;
  const store = openObjectStore(modelUri, storeOptions);
  const partial = `${target}.partial-${process.pid}`;
  mkdirSync(partial, { recursive: true });
  let files = 0;
  for await (const key of store.listKeys('')) {
    if (key.includes('/')) continue; // a package is one flat folder
    writeFileSync(join(partial, key), await store.get(key));
    files += 1;
  }
  if (!existsSync(join(partial, 'model.json')))
    throw new ModelPackageError(`${modelUri} has no model.json (${files} files found)`);
  renameSync(partial, target); // whole packages only: a crash mid-download leaves only the .partial folder
  return target;
}

export type SamSessionFactory = (modelUri: string, settings?: SessionSettings) => Promise<SamSession>;

/** One SAM session per model and settings for the worker's life: loading ONNX models is slow. */
export function createSamSessionFactory(storeOptions: ObjectStoreOptions = {}): SamSessionFactory {
  const cache = new Map<string, Promise<SamSession>>();
  return (modelUri, settings = {}) => {
    const key = JSON.stringify([modelUri, settings]);
    let session = cache.get(key);
    if (!session) {
      session = localModelDir(modelUri, storeOptions).then((dir) => SamSession.load(dir, settings));
      session.catch(() => cache.delete(key)); // a failed load may succeed on the next attempt
      cache.set(key, session);
    }
    return session;
  };
}
