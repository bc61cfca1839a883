// A JSON-lines file built up on local disk and stored with one put at the end. The dataset
// manifest of a large run (millions of lines) never sits in memory, and readers of the store see
// the old manifest or the complete new one, never a half-written one.
import { createReadStream } from 'node:fs';
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { ObjectStore } from '../object-store.ts';

/** Lines are written to disk in chunks of about this size, not one system call per line. */
const CHUNK_BYTES = 1 << 20;
/** Up to this size the file is stored with a single PUT; above it, streamed (multipart on S3). */
const SINGLE_PUT_BYTES = 16 << 20;

export class LineSpool {
  private pending: string[] = [];
  private pendingBytes = 0;

  private constructor(
    private readonly file: string,
    private readonly handle: FileHandle,
  ) {}

  /** Creates `name` in `dir` (a private temp directory the caller removes afterwards). */
  static async create(dir: string, name: string): Promise<LineSpool> {
    const file = path.join(dir, name);
    return new LineSpool(file, await open(file, 'w'));
  }

  async push(value: object): Promise<void> {
    const line = JSON.stringify(value) + '\n';
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= CHUNK_BYTES) await this.flush();
  }

  /** Appends lines serialised elsewhere (e.g. a stored part of the manifest), newline-terminated. */
  async appendLines(text: Buffer): Promise<void> {
    if (text.length === 0) return;
    await this.flush();
    await this.handle.write(text);
    if (text[text.length - 1] !== 0x0a) await this.handle.write('\n');
  }

  /** Closes the local file and stores it under `key`. */
  async upload(out: ObjectStore, key: string): Promise<void> {
    await this.flush();
    await this.handle.close();
    const options = { contentType: 'application/x-ndjson' };
    const { size } = await stat(this.file);
    if (size <= SINGLE_PUT_BYTES) await out.put(key, await readFile(this.file), options);
    else await out.put(key, createReadStream(this.file), options);
  }

  /** Closes the file if upload did not; safe to call twice. */
  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    await this.handle.write(this.pending.join(''));
    this.pending = [];
    this.pendingBytes = 0;
  }
}
