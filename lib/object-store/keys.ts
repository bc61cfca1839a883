// Key (and listing) rules shared by both backends. S3 itself accepts almost any string as a key, but a key must
// also name a file under a file:// root, and a run written to one backend must be readable from the
// other, so both enforce the stricter, portable set: '/'-separated, relative, no '.'/'..'/empty
// segments, no NUL, at most 1024 UTF-8 bytes (the S3 limit).
import { InvalidKeyError } from './errors.ts';

const MAX_KEY_BYTES = 1024;

/** Throws InvalidKeyError unless `key` is a portable object key. */
export function assertValidKey(key: string, rootUri: string): void {
  const reason = keyProblem(key);
  if (reason !== undefined) throw new InvalidKeyError(rootUri, key, reason);
}

/**
 * A list prefix is a plain string prefix (as on S3): 'runs/r1/masks/im' matches 'runs/r1/masks/img1.json'.
 * Only its complete segments (those before the last '/') are checked, the tail may be anything.
 */
export function assertValidPrefix(prefix: string, rootUri: string): void {
  const reason = prefixProblem(prefix);
  if (reason !== undefined) throw new InvalidKeyError(rootUri, prefix, reason);
}

function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'a key must be a non-empty string';
  if (key.endsWith('/')) return "a key must not end with '/' (that names a directory, not an object)";
  return stringProblem(key) ?? segmentProblem(key.split('/'));
}

function prefixProblem(prefix: string): string | undefined {
  if (typeof prefix !== 'string') return 'a prefix must be a string';
  return stringProblem(prefix) ?? segmentProblem(prefix.split('/').slice(0, -1));
}

function stringProblem(s: string): string | undefined {
  if (s.includes('\0')) return 'NUL bytes are not allowed';
  if (s.startsWith('/')) return 'keys are relative to the store root; remove the leading /';
  if (Buffer.byteLength(s, 'utf8') > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} UTF-8 bytes`;
  return undefined;
}

function segmentProblem(segments: string[]): string | undefined {
  for (const segment of segments) {
    if (segment === '..') return "'..' segments would escape the store root";
    if (segment === '.') return "'.' segments are not allowed";
    if (segment === '') return "empty segments ('//') are not allowed";
  }
  return undefined;
}

/** S3 lists keys in UTF-8 byte order, which differs from JS string (UTF-16) order above U+FFFF. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** S3 returns at most 1000 keys per page, so both backends default to and cap at that. */
export function pageSizeOf(options: { pageSize?: number }): number {
  const size = options.pageSize ?? 1000;
  if (!Number.isInteger(size) || size < 1 || size > 1000) {
    throw new RangeError(`list pageSize must be an integer from 1 to 1000, got ${size}`);
  }
  return size;
}
