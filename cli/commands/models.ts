// `sa-engine models list|show|add|promote|rollback`: the model registry (lib/models/registry.ts)
// of a run config's storage (`models.registry`, by default `models/` under `output`).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { CHAMPION } from '../../lib/models/gate.ts';
import { ModelRegistry, registryUri, type Lineage } from '../../lib/models/registry.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { loadRunConfigFile, type RunConfig } from '../../lib/run-config.ts';
import { resolveEndpoints } from '../endpoints.ts';

interface RegistryFlags {
  config?: string;
  registry?: string;
}

export function registerModelsCommands(program: Command): void {
  const models = program
    .command('models')
    .description('The model registry: versions with their lineage, and the aliases runs use (champion).');

  withRegistry(
    models.command('list').description('Every model, its versions and where its aliases point.'),
  ).action(async (flags: RegistryFlags) => {
    const registry = await openRegistry(flags);
    const names = await registry.names();
    if (names.length === 0) console.log(`The registry ${registry.store.rootUri} has no models yet.`);
    for (const name of names) {
      const aliases = await registry.aliases(name);
      console.log(name);
      for (const lineage of await registry.versions(name)) {
        const marks = Object.keys(aliases).filter((alias) => aliases[alias] === lineage.version);
        console.log(`  ${versionLine(lineage)}${marks.length ? `  ← ${marks.join(', ')}` : ''}`);
      }
    }
  });

  withRegistry(
    models
      .command('show')
      .description("A version's lineage: parent, training set, steps, trigger, metrics, files.")
      .argument('<name>', 'model name')
      .argument('[version]', 'vK, K or an alias (default: champion)'),
  ).action(async (name: string, version: string | undefined, flags: RegistryFlags) => {
    const registry = await openRegistry(flags);
    const lineage = await registry.lineage(name, await versionOf(registry, name, version ?? CHAMPION));
    console.log(JSON.stringify({ uri: registry.versionUri(name, lineage.version), ...lineage }, null, 2));
  });

  withRegistry(
    models
      .command('add')
      .description('Add a model package folder as the next version of NAME (e.g. an official SAM export).')
      .argument('<dir>', 'package folder with model.json')
      .requiredOption('--name <name>', 'model name in the registry')
      .option('--trigger <text>', 'why this version exists', 'added by hand')
      .option('--promote', `point ${CHAMPION} at it`),
  ).action(
    async (dir: string, flags: RegistryFlags & { name: string; trigger: string; promote?: boolean }) => {
      const registry = await openRegistry(flags);
      const lineage = await registry.register(dir, flags.name, {
        trigger: flags.trigger,
        metrics: await packageMetrics(dir),
      });
      console.log(
        `Added ${flags.name} v${lineage.version}: ${registry.versionUri(flags.name, lineage.version)}`,
      );
      if (flags.promote)
        await promote(registry, flags.name, lineage.version, CHAMPION, 'added with --promote');
    },
  );

  withRegistry(
    models
      .command('promote')
      .description(`Point an alias (default ${CHAMPION}) at a version.`)
      .argument('<name>', 'model name')
      .argument('<version>', 'vK or K')
      .option('--alias <alias>', 'alias to move', CHAMPION)
      .option('--reason <text>', 'recorded with the move', 'promoted by hand'),
  ).action(
    async (name: string, version: string, flags: RegistryFlags & { alias: string; reason: string }) => {
      const registry = await openRegistry(flags);
      await promote(registry, name, parseVersion(version), flags.alias, flags.reason);
    },
  );

  withRegistry(
    models
      .command('rollback')
      .description('Point an alias back at the version it pointed at before its last move.')
      .argument('<name>', 'model name')
      .option('--alias <alias>', 'alias to move back', CHAMPION)
      .option('--reason <text>', 'recorded with the move', 'rolled back by hand'),
  ).action(async (name: string, flags: RegistryFlags & { alias: string; reason: string }) => {
    const registry = await openRegistry(flags);
    const move = await registry.rollback(name, flags.alias, flags.reason);
    console.log(`${name}@${flags.alias}: v${move.previous} → v${move.version}`);
  });
}

function withRegistry(command: Command): Command {
  return command
    .option('--config <file>', 'run config whose storage holds the registry')
    .option('--registry <uri>', 'the registry itself: s3://bucket/prefix or file:///path');
}

/** The registry of `--registry`, or of the run config's `models.registry` (or `<output>/models`). */
async function openRegistry(flags: RegistryFlags): Promise<ModelRegistry> {
  if (!flags.registry && !flags.config)
    throw new Error('say which registry: --config FILE or --registry URI');
  const config: RunConfig | undefined = flags.config ? await loadRunConfigFile(flags.config) : undefined;
  const uri = flags.registry ?? registryUri(config!);
  const stores = new StoreCache(resolveEndpoints({}, config).storeOptions);
  return new ModelRegistry(stores.open(uri));
}

async function promote(
  registry: ModelRegistry,
  name: string,
  version: number,
  alias: string,
  reason: string,
): Promise<void> {
  const current = await registry.resolve(name, alias);
  await registry.moveAlias(name, alias, version, { reason, expected: current });
  console.log(`${name}@${alias}: ${current === undefined ? 'unset' : `v${current}`} → v${version}`);
}

async function versionOf(registry: ModelRegistry, name: string, text: string): Promise<number> {
  if (/^v?\d+$/.test(text)) return parseVersion(text);
  const version = await registry.resolve(name, text);
  if (version === undefined) throw new Error(`${name} has no alias "${text}"`);
  return version;
}

function parseVersion(text: string): number {
  const match = /^v?(\d+)$/.exec(text);
  if (!match || Number(match[1]) < 1) throw new Error(`"${text}" is not a version: use vK or K, K ≥ 1`);
  return Number(match[1]);
}

function versionLine(lineage: Lineage): string {
  const parent = lineage.parent ? `from ${lineage.parent.name} v${lineage.parent.version}` : 'no parent';
  return `v${lineage.version}  ${lineage.createdAt.slice(0, 19)}Z  ${parent}, ${lineage.trigger}${oneClickFigures(lineage)}`;
}

/** "; 1-click mIoU: heldout_synthetic 0.357, grabcut 0.060" from metrics as the trainer's evaluate writes them. */
function oneClickFigures(lineage: Lineage): string {
  const figures = Object.entries(lineage.metrics ?? {}).flatMap(([set, value]) => {
    const miou = (value as { miou_1click?: unknown } | null)?.miou_1click;
    return typeof miou === 'number' ? [`${set} ${miou.toFixed(3)}`] : [];
  });
  return figures.length ? `; 1-click mIoU: ${figures.join(', ')}` : '';
}

/** The package's metrics.json (the trainer's evaluate output), when it has one. */
async function packageMetrics(dir: string): Promise<Record<string, unknown> | null> {
  const file = join(dir, 'metrics.json');
  if (!existsSync(file)) return null;
  return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
}
