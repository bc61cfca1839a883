// lib/models/registry.ts: versions are created once, numbered without gaps or doubles even when
// registered at once, and aliases move only from the state the caller saw; and `sa-engine models`.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AliasConflictError, ModelRegistry, RegistryError, type Lineage } from '../../lib/models/registry.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { readDetectorPackage } from '../../lib/detector/detector-package.ts';
import { readModelPackage } from '../../lib/sam/model-package.ts';
import { cli } from '../helpers/cli.ts';

const REFERENCE = resolve(import.meta.dirname, '../../models/sae-ref');
const DETECTOR = resolve(import.meta.dirname, '../../models/sae-det');

let root: string;
let registry: ModelRegistry;
let pkg: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'sae-registry-test-'));
  registry = new ModelRegistry(openObjectStore(pathToFileURL(join(root, 'registry')).href));
  // A package with the reference model.json and small stand-ins for its ONNX files.
  pkg = join(root, 'pkg');
  await mkdir(pkg);
  await copyFile(join(REFERENCE, 'model.json'), join(pkg, 'model.json'));
  for (const file of [
    'encoder.onnx',
    'decoder.onnx',
    'decoder_batched.onnx',
    'decoder_folded.onnx',
    'decoder_weights.bin',
  ]) {
    await writeFile(join(pkg, file), `bytes of ${file}`);
  }
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const added = { trigger: 'added by hand' };

describe('ModelRegistry', () => {
  it('registers a package as the next version, renamed, with its files hashed', async () => {
    const v1 = await registry.register(pkg, 'sam', added);
    const v2 = await registry.register(pkg, 'sam', {
      trigger: 'stage1 round 1: 120 masks',
      parent: { name: 'sam', version: 1 },
      steps: 300,
      metrics: { miou1: 0.5 },
    });
    expect([v1.version, v2.version]).toEqual([1, 2]);
    expect(v1.source).toEqual({ name: 'sae-ref', version: '4' });
    expect(v2.parent).toEqual({ name: 'sam', version: 1 });
    // printf 'bytes of encoder.onnx' | sha256sum
    expect(v1.files.find((f) => f.name === 'encoder.onnx')).toEqual({
      name: 'encoder.onnx',
      bytes: 21,
      sha256: '60fecaf5176d8867f3f4636f3e972de0436bbe8a02bd9d5d4be2d04eca8e8c0f',
    });
    const stored = await readModelPackage(fileURLToPath(registry.versionUri('sam', 2)));
    expect([stored.name, stored.version]).toEqual(['sam', 'v2']);
    expect(await readFile(join(fileURLToPath(registry.versionUri('sam', 2)), 'encoder.onnx'), 'utf8')).toBe(
      'bytes of encoder.onnx',
    );
    expect((await registry.versions('sam')).map((l) => l.version)).toEqual([1, 2]);
    expect(await registry.names()).toEqual(['sam']);
  });

  it('gives trainings that finish at once different versions', async () => {
    const lineages = await Promise.all([1, 2, 3, 4].map(() => registry.register(pkg, 'sam', added)));
    expect(lineages.map((l) => l.version).sort()).toEqual([1, 2, 3, 4]);
  });

  it('finishes the version a failed attempt claimed when retried with the same key', async () => {
    const failing = registry.register(pkg, 'sam', {
      ...added,
      idempotencyKey: 'run-1/retrain-1',
      onFile: (file) => {
        if (file === 'decoder.onnx') throw new Error('worker died');
      },
    });
    await expect(failing).rejects.toThrow('worker died');
    expect(await registry.versions('sam')).toEqual([]); // incomplete versions are not listed
    const retried = await registry.register(pkg, 'sam', { ...added, idempotencyKey: 'run-1/retrain-1' });
    expect(retried.version).toBe(1);
    const again = await registry.register(pkg, 'sam', { ...added, idempotencyKey: 'run-1/retrain-1' });
    expect(again).toEqual(retried);
    expect((await registry.register(pkg, 'sam', added)).version).toBe(2);
  });

  it('refuses a package whose model.json names a file it lacks, before taking a version', async () => {
    await rm(join(pkg, 'encoder.onnx'));
    await expect(registry.register(pkg, 'sam', added)).rejects.toThrow(
      /names encoder\.onnx, which is not in/,
    );
    await writeFile(join(pkg, 'encoder.onnx'), 'x');
    expect((await registry.register(pkg, 'sam', added)).version).toBe(1);
  });

  it("stores stage 2's detector packages too, renamed, and refuses one that lacks its graph", async () => {
    const detector = join(root, 'det');
    await mkdir(detector);
    await copyFile(join(DETECTOR, 'model.json'), join(detector, 'model.json'));
    const v1 = await registry.register(detector, 'detector', added).catch((err: Error) => err);
    expect(String(v1)).toMatch(/names detector\.onnx, which is not in/);
    await writeFile(join(detector, 'detector.onnx'), 'bytes of detector.onnx');
    await writeFile(join(detector, 'detector.pt'), 'bytes of detector.pt');
    const lineage = await registry.register(detector, 'detector', added);
    expect(lineage).toMatchObject({ version: 1, source: { name: 'sae-det', version: 'v1' } });
    expect(lineage.files.map((f) => f.name)).toEqual(['detector.onnx', 'detector.pt', 'model.json']);
    const stored = await readDetectorPackage(fileURLToPath(registry.versionUri('detector', 1)));
    expect([stored.name, stored.version]).toEqual(['detector', 'v1']);
  });

  it('refuses names and aliases that could not be keys', async () => {
    await expect(registry.register(pkg, '../sam', added)).rejects.toThrow(RegistryError);
    await registry.register(pkg, 'sam', added);
    await expect(registry.moveAlias('sam', 'Champion/x', 1, { reason: 'r' })).rejects.toThrow(
      /alias "Champion\/x"/,
    );
  });

  it('moves an alias only from where the caller saw it, and rolls it back', async () => {
    for (let i = 0; i < 3; i++) await registry.register(pkg, 'sam', added);
    await registry.moveAlias('sam', 'champion', 1, { reason: 'first', expected: undefined });
    await registry.moveAlias('sam', 'champion', 2, { reason: 'gate passed', expected: 1 });
    await expect(registry.moveAlias('sam', 'champion', 3, { reason: 'stale', expected: 1 })).rejects.toThrow(
      AliasConflictError,
    );
    // Two promotions from the same state: one wins, the other is told.
    const results = await Promise.allSettled([
      registry.moveAlias('sam', 'champion', 3, { reason: 'a', expected: 2 }),
      registry.moveAlias('sam', 'champion', 1, { reason: 'b', expected: 2 }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected');
    expect((rejected as PromiseRejectedResult).reason).toBeInstanceOf(AliasConflictError);
    const winner = (await registry.resolve('sam', 'champion'))!;
    const rolledBack = await registry.rollback('sam', 'champion', 'bad masks');
    expect(rolledBack).toMatchObject({ version: 2, previous: winner, seq: 4 });
    expect(await registry.aliases('sam')).toEqual({ champion: 2 });
    expect((await registry.aliasHistory('sam', 'champion')).map((m) => m.version)).toEqual([1, 2, winner, 2]);
  });

  it('points aliases only at complete versions', async () => {
    await expect(registry.moveAlias('sam', 'champion', 1, { reason: 'r' })).rejects.toThrow(
      /sam v1 is not in the registry/,
    );
    await expect(registry.rollback('sam', 'champion', 'r')).rejects.toThrow(/has never been set/);
  });

  it('names the record it cannot read', async () => {
    await registry.register(pkg, 'sam', added);
    await writeFile(join(root, 'registry', 'sam', 'v1', 'lineage.json'), '{"format": "other"}');
    await expect(registry.lineage('sam', 1)).rejects.toThrow(
      /sam\/v1\/lineage\.json is not a registry record/,
    );
  });
});

describe('sa-engine models', () => {
  it('adds, lists, promotes, shows and rolls back through the CLI, with a clear error otherwise', async () => {
    const uri = pathToFileURL(join(root, 'cli-registry')).href;
    const add = await cli('models', 'add', REFERENCE, '--name', 'sae-ref', '--registry', uri, '--promote');
    expect(add.stdout).toContain('Added sae-ref v1');
    expect(add.stdout).toContain('sae-ref@champion: unset → v1');
    await cli('models', 'add', pkg, '--name', 'sae-ref', '--registry', uri, '--trigger', 'a test');
    expect((await cli('models', 'promote', 'sae-ref', 'v2', '--registry', uri)).stdout).toContain('v1 → v2');
    const list = await cli('models', 'list', '--registry', uri);
    // The reference package's metrics.json becomes the version's metrics.
    expect(list.stdout).toMatch(
      /v1 .* added by hand; 1-click mIoU: heldout_synthetic 0\.\d{3}, grabcut 0\.\d{3}\n/,
    );
    expect(list.stdout).toMatch(/v2 .* a test {2}← champion/);
    expect((await cli('models', 'rollback', 'sae-ref', '--registry', uri)).stdout).toContain('v2 → v1');
    const show = JSON.parse((await cli('models', 'show', 'sae-ref', '--registry', uri)).stdout) as Lineage;
    expect(show).toMatchObject({ version: 1, source: { name: 'sae-ref' } });
    const missing = await cli('models', 'promote', 'sae-ref', '7', '--registry', uri);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('sae-ref v7 is not in the registry');
    expect((await cli('models', 'list')).stderr).toContain(
      'say which registry: --config FILE or --registry URI',
    );
  });
});
