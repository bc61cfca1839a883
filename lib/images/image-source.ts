// The images of a run, as full object URIs in a stable order: every object under a prefix whose
// extension matches (S3 listing order), or the lines of a manifest (JSON lines, or an S3
// Inventory-style CSV). Each comes with its position in the source, so that a listing interrupted
// after any image resumes right after it (S3 StartAfter, or the manifest line).
//
// Duplicates are dropped so that each image gets exactly one mask file. A prefix listing has none
// (S3 keys are unique) and holds nothing in memory however many keys there are; a manifest may
// repeat a line, so short (66-bit) digests of its URIs are kept: about 80 bytes per manifest line.
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { parse as parseCsv } from 'csv-parse/sync';
import { joinUri, splitObjectUri, type StoreCache } from '../object-store/uri.ts';

export type ImageSource =
  { prefix: string; extensions: string[] } | { manifest: string; format: 'jsonl' | 'csv' };

/** Where an image sits in its source: the listing's key, or the manifest's line number. */
export type SourcePosition = { afterKey: string } | { line: number };

export interface SourcedImage {
  uri: string;
  position: SourcePosition;
}

export class ImageSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageSourceError';
  }
}

/** The images of a source in order, each once; after `resumeAfter`, only those that follow it. */
export function imageUris(
  source: ImageSource,
  stores: StoreCache,
  resumeAfter?: SourcePosition,
): AsyncIterable<SourcedImage> {
  return 'prefix' in source
    ? fromPrefix(source.prefix, source.extensions, stores, resumeAfter)
    : fromManifest(source, stores, resumeAfter);
}

async function* fromPrefix(
  prefix: string,
  extensions: string[],
  stores: StoreCache,
  resumeAfter?: SourcePosition,
): AsyncIterable<SourcedImage> {
  const store = stores.open(prefix);
  const wanted = new Set(extensions.map((e) => e.toLowerCase()));
  const startAfter = resumeAfter && 'afterKey' in resumeAfter ? resumeAfter.afterKey : undefined;
  for await (const key of store.listKeys('', { startAfter })) {
    const ext = key.slice(key.lastIndexOf('.') + 1).toLowerCase();
    if (key.includes('.') && wanted.has(ext)) yield { uri: store.uri(key), position: { afterKey: key } };
  }
}

async function* fromManifest(
  source: { manifest: string; format: 'jsonl' | 'csv' },
  stores: StoreCache,
  resumeAfter?: SourcePosition,
): AsyncIterable<SourcedImage> {
  const { store, key } = stores.locate(source.manifest);
  const manifestDir = source.manifest.slice(0, source.manifest.lastIndexOf('/'));
  const lines = createInterface({ input: await store.getStream(key), crlfDelay: Infinity });
  const skipThrough = resumeAfter && 'line' in resumeAfter ? resumeAfter.line : 0;
  const seen = new Set<string>();
  let lineNo = 0;
  for await (const line of lines) {
    lineNo += 1;
    if (line.trim() === '') continue;
    const where = `${source.manifest} line ${lineNo}`;
    const uri =
      source.format === 'jsonl'
        ? uriFromJsonLine(line, manifestDir, where)
        : uriFromInventoryCsv(line, where);
    const digest = createHash('sha256').update(uri).digest('base64').slice(0, 11);
    if (seen.has(digest)) continue;
    seen.add(digest); // lines before a resume point are read again only to know their URIs
    if (lineNo > skipThrough) yield { uri, position: { line: lineNo } };
  }
}

/** `"a/b.jpg"`, `{"key": "a/b.jpg"}` (relative to the manifest's folder) or `{"uri": "s3://..."}`. */
export function uriFromJsonLine(line: string, manifestDir: string, where: string): string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new ImageSourceError(`${where}: not JSON; expected "key", {"key": ...} or {"uri": ...}`);
  }
  if (typeof value === 'string') return joinUri(manifestDir, value);
  if (value && typeof value === 'object') {
    const { key, uri } = value as { key?: unknown; uri?: unknown };
    if (typeof uri === 'string') return checkedUri(uri, where);
    if (typeof key === 'string' && key !== '') return joinUri(manifestDir, key);
  }
  throw new ImageSourceError(
    `${where}: expected "key", {"key": ...} or {"uri": ...}, got ${line.slice(0, 80)}`,
  );
}

/** S3 Inventory CSV: "bucket","key",... with URL-encoded keys. */
export function uriFromInventoryCsv(line: string, where: string): string {
  let fields: string[];
  try {
    fields = (parseCsv(line) as string[][])[0] ?? [];
  } catch (err) {
    throw new ImageSourceError(`${where}: not CSV (${(err as Error).message})`);
  }
  const [bucket, key] = fields;
  if (!bucket || !key)
    throw new ImageSourceError(`${where}: expected "bucket","key",... got ${line.slice(0, 80)}`);
  let decoded: string;
  try {
    decoded = decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    throw new ImageSourceError(`${where}: key ${key} is not valid URL encoding`);
  }
  return `s3://${bucket}/${decoded}`;
}

function checkedUri(uri: string, where: string): string {
  try {
    splitObjectUri(uri);
    return uri;
  } catch (err) {
    throw new ImageSourceError(`${where}: ${(err as Error).message}`);
  }
}
