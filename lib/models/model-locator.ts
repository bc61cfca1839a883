// The model package behind a model id ("name@version", as tasks and masks name the model that
// assisted), for the tools that decode a task's masks: the annotation service (which sends the
// browser that model's decoder) and the simulated annotators. A run without retraining has one
// model, its `models.sam`; a run that retrains also has every version of its registry model, which
// a round assisted by a new champion names (`sam@v3`).
import type { ObjectStoreOptions } from '../object-store.ts';
import { localModelDir } from '../sam/local-model.ts';
import { readModelPackage } from '../sam/model-package.ts';
import type { ModelRegistry } from './registry.ts';

export class UnknownModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnknownModelError';
  }
}

export class ModelLocator {
  private constructor(
    /** The run's own package (`models.sam`), by its id. */
    private readonly base: { id: string; dir: string },
    private readonly registry: { registry: ModelRegistry; name: string } | undefined,
    private readonly storeOptions: ObjectStoreOptions,
  ) {}

  static async open(
    baseDir: string,
    registry?: { registry: ModelRegistry; name: string },
    storeOptions: ObjectStoreOptions = {},
  ): Promise<ModelLocator> {
    const pkg = await readModelPackage(baseDir);
    return new ModelLocator({ id: `${pkg.name}@${pkg.version}`, dir: baseDir }, registry, storeOptions);
  }

  /** The id of the run's own package: the model tasks name unless a retrain promoted another. */
  get baseId(): string {
    return this.base.id;
  }

  /** A local folder holding the package of `modelId`; UnknownModelError for a model this run has not. */
  async dirFor(modelId: string): Promise<string> {
    if (modelId === this.base.id) return this.base.dir;
    const match = /^(.+)@v(\d+)$/.exec(modelId);
    if (this.registry && match && match[1] === this.registry.name) {
      const uri = this.registry.registry.versionUri(this.registry.name, Number(match[2]));
      return localModelDir(uri, this.storeOptions);
    }
    throw new UnknownModelError(`model ${modelId} is neither this run's model (${this.base.id}) nor a version of its registry model`);
  }
}
