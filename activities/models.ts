// The model registry's activities (lib/models/registry.ts), on the orchestration pool: small reads
// and conditional writes that a retrain workflow strings around the trainer's activities.
import { Context } from '@temporalio/activity';
import { CHAMPION } from '../lib/models/gate.ts';
import {
  AliasConflictError,
  ModelRegistry,
  type AliasMove,
  type Lineage,
  type RegisterOptions,
} from '../lib/models/registry.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import { localModelDir } from '../lib/sam/local-model.ts';

export interface RegistryRef {
  /** The registry's root URI. */
  registry: string;
  name: string;
}

export function createModelActivities(storeOptions: ObjectStoreOptions = {}) {
  const stores = new StoreCache(storeOptions);
  const open = (uri: string) => new ModelRegistry(stores.open(uri));
  return {
    /** The next version, or (same key, a retry) the one already claimed and its lineage if complete. */
    async claimModelVersion(
      input: RegistryRef & { idempotencyKey: string },
    ): Promise<{ version: number; uri: string; done: Lineage | null }> {
      const registry = open(input.registry);
      const claimed = await registry.claim(input.name, input.idempotencyKey);
      return {
        version: claimed.version,
        uri: registry.versionUri(input.name, claimed.version),
        done: claimed.done ?? null,
      };
    },

    /**
     * The champion of a run's model, first seeded from the run's `models.sam` package when the
     * registry has none (a retried or concurrent seed finds the champion someone else set).
     */
    /**
     * The champion's version and folder; with none yet, registers `seedModelUri` as the first
     * version and makes it the champion (null when there is no seed either).
     */
    async ensureChampion(
      input: RegistryRef & { seedModelUri: string | null; runId: string },
    ): Promise<{ version: number; uri: string } | null> {
      const registry = open(input.registry);
      const champion = async () => (await registry.resolve(input.name, CHAMPION)) ?? null;
      let version = await champion();
      if (version === null && input.seedModelUri !== null) {
        const ctx = Context.current();
        const dir = await localModelDir(input.seedModelUri, storeOptions);
        const lineage = await registry.register(dir, input.name, {
          trigger: `seeded from ${input.seedModelUri} by run ${input.runId}`,
          idempotencyKey: `${input.runId}/seed`,
          onFile: (file) => ctx.heartbeat({ uploaded: file }),
        });
        try {
          await registry.moveAlias(input.name, CHAMPION, lineage.version, {
            reason: `seeded by run ${input.runId}`,
            expected: undefined,
          });
        } catch (err) {
          if (!(err instanceof AliasConflictError)) throw err;
        }
        version = (await champion())!;
      }
      return version === null ? null : { version, uri: registry.versionUri(input.name, version) };
    },

    /** Where an alias points now (null: never set). */
    async resolveModelAlias(input: RegistryRef & { alias: string }): Promise<number | null> {
      return (await open(input.registry).resolve(input.name, input.alias)) ?? null;
    },

    /** Records a trained version's lineage, which makes it a complete version. */
    async completeModelVersion(
      input: RegistryRef & {
        version: number;
        lineage: Omit<RegisterOptions, 'onFile'> & { files: Lineage['files'] };
      },
    ): Promise<Lineage> {
      const { name, version, lineage } = input;
      return open(input.registry).complete(name, version, {
        ...lineage,
        source: { name, version: `v${version}` },
      });
    },

    /** Moves an alias from where the caller saw it (`expected`); AliasConflictError otherwise. */
    async moveModelAlias(
      input: RegistryRef & { alias: string; version: number; expected: number | null; reason: string },
    ): Promise<AliasMove> {
      return open(input.registry).moveAlias(input.name, input.alias, input.version, {
        reason: input.reason,
        expected: input.expected ?? undefined,
      });
    },
  };
}

export type ModelActivities = ReturnType<typeof createModelActivities>;
