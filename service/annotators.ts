// Annotator accounts of the annotation service: `sa-engine annotators add NAME` makes a random
// token, prints it once and stores only its SHA-256 under annotators/<name>.json in the run's
// output store. A request's bearer token is hashed and looked up; the token itself is never
// stored, so reading the store does not let anyone act as an annotator.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { ObjectStore } from '../lib/object-store.ts';

/** Names are storage-key segments and appear in records: keep them plain. */
const ANNOTATOR_NAME = /^[a-z0-9][a-z0-9_-]{0,39}$/;

const accountSchema = z.object({
  name: z.string(),
  tokenSha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
});

export class AnnotatorAccountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AnnotatorAccountError';
  }
}

function accountKey(name: string): string {
  return `annotators/${name}.json`;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export class AnnotatorAccounts {
  /** Hash (hex) → name, reloaded from storage when a token is not found (new accounts). */
  private byHash = new Map<string, string>();
  private loadedAt = 0;

  constructor(
    private readonly store: ObjectStore,
    /** A failed lookup reloads the accounts at most this often. */
    private readonly reloadMs = 2_000,
  ) {}

  /**
   * Creates an account and returns its token; refuses a name that exists unless `replace` (a new
   * token for it: the old one stops working).
   */
  async add(name: string, opts: { replace?: boolean } = {}): Promise<string> {
    if (!ANNOTATOR_NAME.test(name)) {
      throw new AnnotatorAccountError(
        `"${name}" is not a usable annotator name: 1-40 lowercase letters, digits, "-" or "_", starting with a letter or digit`,
      );
    }
    const token = `sae_${randomBytes(32).toString('base64url')}`;
    const account = { name, tokenSha256: sha256(token).toString('hex'), createdAt: new Date().toISOString() };
    const body = JSON.stringify(account) + '\n';
    const put = { contentType: 'application/json' };
    if (opts.replace) await this.store.put(accountKey(name), body, put);
    else if (!(await this.store.putIfAbsent(accountKey(name), body, put)))
      throw new AnnotatorAccountError(`annotator "${name}" exists; pick another name`);
    for (const [hash, owner] of this.byHash) if (owner === name) this.byHash.delete(hash);
    this.byHash.set(account.tokenSha256, name);
    return token;
  }

  /** The annotator a token belongs to, or undefined. */
  async verify(token: string): Promise<string | undefined> {
    const hash = sha256(token);
    const found = this.lookup(hash);
    if (found || Date.now() - this.loadedAt < this.reloadMs) return found;
    await this.reload();
    return this.lookup(hash);
  }

  private lookup(hash: Buffer): string | undefined {
    for (const [stored, name] of this.byHash) {
      if (timingSafeEqual(Buffer.from(stored, 'hex'), hash)) return name;
    }
    return undefined;
  }

  private async reload(): Promise<void> {
    const byHash = new Map<string, string>();
    for await (const key of this.store.listKeys('annotators/')) {
      const parsed = accountSchema.safeParse(JSON.parse((await this.store.get(key)).toString('utf8')));
      if (parsed.success) byHash.set(parsed.data.tokenSha256, parsed.data.name);
    }
    this.byHash = byHash;
    this.loadedAt = Date.now();
  }
}
