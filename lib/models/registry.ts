// The model registry: every model version the engine trains or a user adds, in storage, forever.
//
//   <registry>/<name>/v<k>/claim.json          written first, only if absent: v<k> is taken
//   <registry>/<name>/v<k>/<package files>     model.json (name and version set to the registry's),
//                                              encoder.onnx, decoder.onnx, ... as one flat folder
//   <registry>/<name>/v<k>/lineage.json        written last, only if absent: the version is complete
//   <registry>/<name>/aliases/<alias>/<seq>.json  each move of an alias (champion, candidate, ...)
//
// Nothing here is ever overwritten: a version is created once, and an alias moves by adding its
// next numbered move, only if absent. Two trainings that both try v<k> get v<k> and v<k+1>; two
// promotions from the same state get one move and one AliasConflictError. So a version's URI can
// be cached forever (lib/sam/local-model.ts does), and an alias's history is its audit trail.
// An alias is a log of numbered moves rather than one pointer object replaced in place: replacing
// an object only if unchanged needs If-Match, which not every S3-compatible server offers, while a
// numbered log needs only If-None-Match (ObjectStore.putIfAbsent), and keeps what rollback needs.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { ObjectStore } from '../object-store.ts';
import { joinUri } from '../object-store/uri.ts';
import type { RunConfig } from '../run-config.ts';
import { DETECTOR_PACKAGE_FORMAT, readDetectorPackage } from '../detector/detector-package.ts';
import { readModelPackage } from '../sam/model-package.ts';

export const LINEAGE_FORMAT = 'sa-engine-lineage/1';

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const ALIAS = /^[a-z][a-z0-9-]{0,31}$/;
/** Versions tried past a taken one before giving up (many trainings finishing at once). */
const ALLOCATION_ATTEMPTS = 20;

const versionRefSchema = z.object({ name: z.string(), version: z.number().int().positive() });
export type VersionRef = z.infer<typeof versionRefSchema>;

const lineageSchema = z.object({
  format: z.literal(LINEAGE_FORMAT),
  name: z.string(),
  version: z.number().int().positive(),
  createdAt: z.string(),
  /** The version this one was trained from; null for a model added from outside. */
  parent: versionRefSchema.nullable(),
  /** The training-set manifest and the SHA-256 of its bytes, so a retrain on changed data shows. */
  trainingSet: z.object({ uri: z.string(), sha256: z.string() }).nullable(),
  steps: z.number().int().nonnegative().nullable(),
  /** Why it exists: "added by hand", "stage1 round 3: 1,200 masks since v4", ... */
  trigger: z.string(),
  /** Figures on the evaluation set (1-click mIoU, NoC@90, ...), as the evaluation wrote them. */
  metrics: z.record(z.string(), z.unknown()).nullable(),
  /** The evaluation gate's decision for a trained candidate (lib/models/gate.ts); null when none ran. */
  gate: z
    .object({
      promoted: z.boolean(),
      reason: z.string(),
      champion: versionRefSchema.nullable(),
      championMetrics: z.record(z.string(), z.unknown()).nullable(),
    })
    .nullable(),
  /** The package's own name and version before the registry renamed it. */
  source: z.object({ name: z.string(), version: z.string() }),
  /** Set by a caller that may retry (a Temporal activity): a retry finishes or returns this version. */
  idempotencyKey: z.string().nullable(),
  files: z.array(z.object({ name: z.string(), bytes: z.number().int(), sha256: z.string() })),
});
export type Lineage = z.infer<typeof lineageSchema>;

const claimSchema = z.object({ version: z.number().int(), idempotencyKey: z.string().nullable() });

const aliasMoveSchema = z.object({
  alias: z.string(),
  seq: z.number().int().positive(),
  version: z.number().int().positive(),
  /** The version the alias pointed at before this move (null for its first). */
  previous: z.number().int().positive().nullable(),
  reason: z.string(),
  at: z.string(),
});
export type AliasMove = z.infer<typeof aliasMoveSchema>;

export interface RegisterOptions {
  parent?: VersionRef | null;
  trainingSet?: { uri: string; sha256: string } | null;
  steps?: number | null;
  trigger: string;
  metrics?: Record<string, unknown> | null;
  gate?: Lineage['gate'];
  /** The same key on a retry finishes the version the first attempt claimed, or returns it. */
  idempotencyKey?: string;
  /** Called after each file is uploaded (e.g. to heartbeat). */
  onFile?: (file: string) => void;
}

/** Where a run config's registry lives: `models.registry`, or `models/` under its output. */
export function registryUri(config: Pick<RunConfig, 'models' | 'output'>): string {
  return config.models.registry ?? joinUri(config.output, 'models');
}

/** A file of a version as its lineage records it: name, size and SHA-256 of these bytes. */
export function lineageFile(name: string, bytes: Buffer): Lineage['files'][number] {
  return { name, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

export class RegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** Someone else moved the alias since it was read: read it again and decide again. */
export class AliasConflictError extends RegistryError {
  constructor(message: string) {
    super(message);
    this.name = 'AliasConflictError';
  }
}

export class ModelRegistry {
  constructor(readonly store: ObjectStore) {}

  /** The folder URI of a version: what a run config's `models.sam` or a workflow's modelUri takes. */
  versionUri(name: string, version: number): string {
    return this.store.uri(`${checkName(name)}/v${version}`);
  }

  /** Uploads a model package folder as the next version of `name` and returns its lineage. */
  async register(dir: string, name: string, opts: RegisterOptions): Promise<Lineage> {
    checkName(name);
    const pkg = await readPackage(dir);
    const names = (await readdir(dir, { withFileTypes: true }))
      .filter((entry) => entry.isFile() && !RESERVED.has(entry.name))
      .map((entry) => entry.name)
      .sort();
    for (const file of pkg.files) {
      if (!names.includes(file)) {
        throw new RegistryError(`${join(dir, 'model.json')} names ${file}, which is not in ${dir}`);
      }
    }
    const claimed = await this.claimVersion(name, opts.idempotencyKey);
    if (claimed.done) return claimed.done;
    const { version } = claimed;
    const prefix = `${name}/v${version}/`;
    const files: Lineage['files'] = [];
    for (const file of names) {
      const path = join(dir, file);
      if (file === 'model.json') {
        const bytes = renamedModelJson(await readFile(path), name, version);
        await this.store.put(prefix + file, bytes, { contentType: 'application/json' });
        files.push(lineageFile(file, bytes));
      } else {
        // Streamed (an encoder can be gigabytes): hashed in one read, uploaded in another.
        const hash = createHash('sha256');
        for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
        await this.store.put(prefix + file, createReadStream(path));
        files.push({ name: file, bytes: (await stat(path)).size, sha256: hash.digest('hex') });
      }
      opts.onFile?.(file);
    }
    return this.complete(name, version, {
      ...opts,
      source: { name: pkg.name, version: pkg.version },
      files,
    });
  }

  /**
   * Claims the next version for files that someone else writes (the trainer writes its package into
   * `versionUri(name, version)` itself); `complete` then records it. A retry with the same
   * idempotency key gets the same version, and its lineage when it was completed.
   */
  async claim(name: string, idempotencyKey?: string): Promise<{ version: number; done?: Lineage }> {
    return this.claimVersion(checkName(name), idempotencyKey);
  }

  /** Writes a claimed version's lineage, which makes it complete; never twice. */
  async complete(
    name: string,
    version: number,
    opts: RegisterOptions & { source: Lineage['source']; files: Lineage['files'] },
  ): Promise<Lineage> {
    const key = `${checkName(name)}/v${version}/${LINEAGE}`;
    const lineage: Lineage = {
      format: LINEAGE_FORMAT,
      name,
      version,
      createdAt: new Date().toISOString(),
      parent: opts.parent ?? null,
      trainingSet: opts.trainingSet ?? null,
      steps: opts.steps ?? null,
      trigger: opts.trigger,
      metrics: opts.metrics ?? null,
      gate: opts.gate ?? null,
      source: opts.source,
      idempotencyKey: opts.idempotencyKey ?? null,
      files: opts.files,
    };
    if (await this.store.putIfAbsent(key, JSON.stringify(lineage, null, 2) + '\n')) return lineage;
    const existing = await this.lineage(name, version);
    // A retried completion of the same version by the same caller is done already.
    if (opts.idempotencyKey !== undefined && existing.idempotencyKey === opts.idempotencyKey) return existing;
    throw new RegistryError(`${this.store.uri(key)} exists: ${name} v${version} was completed by another writer`);
  }

  /** Model names in the registry. */
  async names(): Promise<string[]> {
    const names = new Set<string>();
    for await (const key of this.store.listKeys('')) {
      if (key.endsWith(`/${LINEAGE}`) || key.endsWith(`/${CLAIM}`)) names.add(key.split('/')[0]!);
    }
    return [...names].sort();
  }

  /** The complete versions of a model, oldest first (a version still uploading is not listed). */
  async versions(name: string): Promise<Lineage[]> {
    const lineages: Lineage[] = [];
    for (const version of (await this.versionNumbers(name, LINEAGE)).sort((a, b) => a - b)) {
      lineages.push(await this.lineage(name, version));
    }
    return lineages;
  }

  async lineage(name: string, version: number): Promise<Lineage> {
    const key = `${checkName(name)}/v${version}/${LINEAGE}`;
    if (!(await this.store.exists(key))) {
      throw new RegistryError(`${name} v${version} is not in the registry ${this.store.rootUri}`);
    }
    return parse(lineageSchema, await this.store.get(key), this.store.uri(key));
  }

  /** An alias's moves, oldest first; the last is where it points now. */
  async aliasHistory(name: string, alias: string): Promise<AliasMove[]> {
    const moves: AliasMove[] = [];
    for await (const key of this.store.listKeys(aliasPrefix(name, alias))) {
      moves.push(parse(aliasMoveSchema, await this.store.get(key), this.store.uri(key)));
    }
    return moves.sort((a, b) => a.seq - b.seq);
  }

  /** The version an alias points at, or undefined when it was never set. */
  async resolve(name: string, alias: string): Promise<number | undefined> {
    return (await this.aliasHistory(name, alias)).at(-1)?.version;
  }

  /** Every alias of a model and where it points now. */
  async aliases(name: string): Promise<Record<string, number>> {
    const current: Record<string, AliasMove> = {};
    for await (const key of this.store.listKeys(`${checkName(name)}/aliases/`)) {
      const move = parse(aliasMoveSchema, await this.store.get(key), this.store.uri(key));
      if (!current[move.alias] || current[move.alias]!.seq < move.seq) current[move.alias] = move;
    }
    return Object.fromEntries(Object.entries(current).map(([alias, move]) => [alias, move.version]));
  }

  /**
   * Points the alias at a complete version. `expected` is the version the caller saw it at
   * (undefined: not set): when it has moved since, nothing changes and AliasConflictError says so.
   */
  async moveAlias(
    name: string,
    alias: string,
    version: number,
    opts: { reason: string; expected?: number | undefined },
  ): Promise<AliasMove> {
    checkAlias(alias);
    await this.lineage(name, version); // only complete versions can be pointed at
    const history = await this.aliasHistory(name, alias);
    const last = history.at(-1);
    if (last?.version !== opts.expected) {
      throw new AliasConflictError(
        `${name}@${alias} points at ${describeVersion(last?.version)}, not ${describeVersion(opts.expected)} ` +
          'as expected: it was moved meanwhile; check it and try again',
      );
    }
    const move: AliasMove = {
      alias,
      seq: (last?.seq ?? 0) + 1,
      version,
      previous: last?.version ?? null,
      reason: opts.reason,
      at: new Date().toISOString(),
    };
    const key = `${aliasPrefix(name, alias)}${String(move.seq).padStart(6, '0')}.json`;
    if (!(await this.store.putIfAbsent(key, JSON.stringify(move, null, 2) + '\n'))) {
      throw new AliasConflictError(`${name}@${alias} was moved by someone else at the same time; check it and try again`);
    }
    return move;
  }

  /** Moves the alias back to the version it pointed at before its last move. */
  async rollback(name: string, alias: string, reason: string): Promise<AliasMove> {
    const last = (await this.aliasHistory(name, alias)).at(-1);
    if (!last) throw new RegistryError(`${name}@${alias} has never been set: nothing to roll back`);
    if (last.previous === null) {
      throw new RegistryError(`${name}@${alias} has pointed only at v${last.version}: nothing to roll back to`);
    }
    return this.moveAlias(name, alias, last.previous, { reason, expected: last.version });
  }

  /**
   * The lowest version number nobody has claimed, claimed for this caller; or, for a retry with
   * the same idempotency key, the version its first attempt claimed (and its lineage when done).
   */
  private async claimVersion(
    name: string,
    idempotencyKey: string | undefined,
  ): Promise<{ version: number; done?: Lineage }> {
    const claimed = await this.versionNumbers(name, CLAIM);
    if (idempotencyKey !== undefined) {
      for (const version of claimed) {
        const key = `${name}/v${version}/${CLAIM}`;
        const claim = parse(claimSchema, await this.store.get(key), this.store.uri(key));
        if (claim.idempotencyKey !== idempotencyKey) continue;
        const complete = await this.store.exists(`${name}/v${version}/${LINEAGE}`);
        return { version, done: complete ? await this.lineage(name, version) : undefined };
      }
    }
    let version = Math.max(0, ...claimed) + 1;
    for (let attempt = 0; attempt < ALLOCATION_ATTEMPTS; attempt++, version++) {
      const claim = { name, version, at: new Date().toISOString(), idempotencyKey: idempotencyKey ?? null };
      if (await this.store.putIfAbsent(`${name}/v${version}/${CLAIM}`, JSON.stringify(claim) + '\n')) {
        return { version };
      }
    }
    throw new RegistryError(`could not claim a version of ${name} after ${ALLOCATION_ATTEMPTS} tries`);
  }

  private async versionNumbers(name: string, marker: string): Promise<number[]> {
    const versions: number[] = [];
    // Keys under "<name>/v" are "<name>/v<k>/<file>"; the version's own marker file says it is there.
    for await (const key of this.store.listKeys(`${checkName(name)}/v`)) {
      const [, folder, file, ...deeper] = key.split('/');
      const version = /^v(\d+)$/.exec(folder ?? '');
      if (version && file === marker && deeper.length === 0) versions.push(Number(version[1]));
    }
    return versions;
  }
}

const CLAIM = 'claim.json';
const LINEAGE = 'lineage.json';
/** Written by the registry itself; a package folder that has them (e.g. downloaded) does not upload them. */
const RESERVED = new Set([CLAIM, LINEAGE]);

function aliasPrefix(name: string, alias: string): string {
  return `${checkName(name)}/aliases/${checkAlias(alias)}/`;
}

function checkName(name: string): string {
  if (!NAME.test(name)) {
    throw new RegistryError(
      `model name "${name}": use lowercase letters, digits, ".", "-" or "_" (up to 63, starting with a letter or digit)`,
    );
  }
  return name;
}

function checkAlias(alias: string): string {
  if (!ALIAS.test(alias)) {
    throw new RegistryError(`alias "${alias}": use lowercase letters, digits or "-", starting with a letter`);
  }
  return alias;
}

function describeVersion(version: number | undefined): string {
  return version === undefined ? 'nothing' : `v${version}`;
}

/** model.json with the registry's name and version, so masks name the version that made them. */
/**
 * What the registry checks of a package before storing it: its name and version, and the files its
 * model.json names. SAM packages and stage 2's detector packages are told apart by model.json's format.
 */
async function readPackage(dir: string): Promise<{ name: string; version: string; files: string[] }> {
  let format: unknown;
  try {
    format = (JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { format?: unknown }).format;
  } catch {
    format = undefined; // readModelPackage says what is wrong with it
  }
  if (format === DETECTOR_PACKAGE_FORMAT) {
    const detector = await readDetectorPackage(dir);
    return { name: detector.name, version: detector.version, files: [detector.file] };
  }
  const sam = await readModelPackage(dir);
  const files = [sam.encoder.file, sam.decoder.file, sam.batchedDecoder?.file, sam.foldedDecoder?.file];
  return { ...sam, files: files.filter((f): f is string => f !== undefined) };
}

function renamedModelJson(bytes: Buffer, name: string, version: number): Buffer {
  const json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  return Buffer.from(JSON.stringify({ ...json, name, version: `v${version}` }, null, 2) + '\n');
}

function parse<T>(schema: z.ZodType<T>, bytes: Buffer, uri: string): T {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new RegistryError(`${uri} is not JSON`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new RegistryError(`${uri} is not a registry record: ${parsed.error.message}`);
  return parsed.data;
}
