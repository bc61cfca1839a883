// Stage 1 from the command line: the annotation service of a run (`sa-engine annotate serve`, and
// `sa-engine run --workers` with stage 1 enabled), and the run config's simulated annotators,
// which work through that service's HTTP API like people do.
import type { Client } from '@temporalio/client';
import { AnnotationApi } from '../client/annotation-api.ts';
import { runSimulatedAnnotator, type SimulatedAnnotatorResult } from '../client/simulated-annotators.ts';
import { ModelLocator } from '../lib/models/model-locator.ts';
import { ModelRegistry, registryUri } from '../lib/models/registry.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import type { RunConfig } from '../lib/run-config.ts';
import { localModelDir } from '../lib/sam/local-model.ts';
import { SamSession } from '../lib/sam/session.ts';
import { openIntent } from '../lib/stage1/intent.ts';
import { createAnnotationService, type TaskResponse } from '../service/annotation-service.ts';
import { AnnotatorAccounts } from '../service/annotators.ts';
import { buildWeb } from '../web/build.ts';
import type { Endpoints } from './endpoints.ts';

export interface RunningAnnotationService {
  url: string;
  accounts: AnnotatorAccounts;
  close(): Promise<void>;
}

/** The run's model, and (with retraining or stage 2, whose rounds use registry versions) its registry's versions, by model id. */
async function modelLocator(config: RunConfig, endpoints: Endpoints): Promise<ModelLocator> {
  const registry =
    config.stage1.retrain.enabled || config.stage2.enabled
      ? {
          registry: new ModelRegistry(new StoreCache(endpoints.storeOptions).open(registryUri(config))),
          name: config.stage1.retrain.model,
        }
      : undefined;
  const baseDir = await localModelDir(config.models.sam, endpoints.storeOptions);
  return ModelLocator.open(baseDir, registry, endpoints.storeOptions);
}

/** The run's annotation accounts: annotators/<name>.json in its output store. */
export function annotatorAccounts(config: RunConfig, endpoints: Endpoints): AnnotatorAccounts {
  return new AnnotatorAccounts(new StoreCache(endpoints.storeOptions).open(config.output));
}

export async function startAnnotationService(
  config: RunConfig,
  endpoints: Endpoints,
  client: Client,
  listen: { host?: string; port?: number } = {},
): Promise<RunningAnnotationService> {
  const stores = new StoreCache(endpoints.storeOptions);
  const accounts = new AnnotatorAccounts(stores.open(config.output));
  const app = await createAnnotationService({
    client,
    runId: config.run,
    outputUri: config.output,
    stores,
    accounts,
    modelDir: await localModelDir(config.models.sam, endpoints.storeOptions),
    models: await modelLocator(config, endpoints),
    // Under a second, and never a stale tool. SAE_WEB_DIST: a writable folder for it where the
    // install is read-only (a container's root filesystem).
    webDir: await buildWeb(process.env.SAE_WEB_DIST || undefined),
  });
  const host = listen.host ?? config.stage1.service.host;
  const port = listen.port ?? config.stage1.service.port;
  const url = await app.listen({ host, port });
  return { url, accounts, close: () => app.close() };
}

/**
 * Starts the config's simulated annotators against the service at `url`, each with an account of
 * its own (sim-1, sim-2, ...; a new token each time). They work until no task is free and `done`
 * says the run is over.
 */
export async function startSimulatedAnnotators(
  config: RunConfig,
  endpoints: Endpoints,
  service: Pick<RunningAnnotationService, 'url' | 'accounts'>,
  done: () => boolean,
  options: { leave?: (task: TaskResponse) => boolean } = {},
): Promise<SimulatedAnnotatorResult[]> {
  const sims = config.simulatedAnnotators;
  const stores = new StoreCache(endpoints.storeOptions);
  const intent = await openIntent(stores, sims.intent!);
  const models = await modelLocator(config, endpoints);
  const sessions = new Map<string, Promise<SamSession>>();
  const sessionFor = (id: string) => {
    if (!sessions.has(id))
      sessions.set(
        id,
        models.dirFor(id).then((dir) => SamSession.load(dir)),
      );
    return sessions.get(id)!;
  };
  const model = {
    targetIou: sims.targetIou,
    maxClicks: sims.maxClicks,
    minArea: sims.minArea,
    secondsPerClick: sims.secondsPerClick,
    secondsPerAccept: sims.secondsPerAccept,
  };
  return Promise.all(
    Array.from({ length: sims.count }, async (_, index) => {
      const token = await service.accounts.add(`sim-${index + 1}`, { replace: true });
      return runSimulatedAnnotator({
        api: new AnnotationApi(service.url, token),
        index,
        sessionFor,
        intent,
        model,
        maxMasksPerImage: sims.maxMasksPerImage,
        stop: done,
        leave: options.leave,
      });
    }),
  );
}
