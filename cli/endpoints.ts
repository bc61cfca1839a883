// Where the CLI finds Temporal and storage: a flag, then the environment, then the config file,
// then the local dev stack recorded by `sa-engine dev up`, then the defaults.
import { Client, Connection } from '@temporalio/client';
import { readDevState } from '../infra/dev-state.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import type { RunConfig } from '../lib/run-config.ts';
import { temporalAuth, type TemporalAuth, type TemporalTlsSettings } from '../lib/temporal-auth.ts';

export interface Endpoints {
  address: string;
  namespace: string;
  /** The run config's `temporal.tls`, if any; `endpointAuth` adds the environment's settings. */
  tls?: TemporalTlsSettings | null;
  /** Temporal Web UI base URL, when known (the dev stack's). */
  uiUrl?: string;
  storeOptions: ObjectStoreOptions;
}

export interface EndpointFlags {
  address?: string;
  namespace?: string;
}

const DEFAULT_ADDRESS = '127.0.0.1:7233';

export function resolveEndpoints(flags: EndpointFlags, config?: RunConfig): Endpoints {
  const dev = readDevState();
  const configAddress = config?.temporal.address !== DEFAULT_ADDRESS ? config?.temporal.address : undefined;
  const address =
    flags.address ??
    process.env.TEMPORAL_ADDRESS ??
    configAddress ??
    dev?.info.temporal.address ??
    DEFAULT_ADDRESS;
  const namespace =
    flags.namespace ?? process.env.TEMPORAL_NAMESPACE ?? config?.temporal.namespace ?? 'default';
  const uiUrl =
    process.env.SAE_TEMPORAL_UI ??
    (dev && dev.info.temporal.address === address ? dev.info.temporal.uiUrl : undefined);
  return { address, namespace, tls: config?.temporal.tls, uiUrl, storeOptions: storeOptions(config) };
}

/**
 * mTLS or an API key, from the environment (TEMPORAL_TLS_*, TEMPORAL_API_KEY) or temporal.tls. Read
 * when a command connects, so a command that never does (`models list`) never reads certificates.
 */
export function endpointAuth(endpoints: Endpoints): TemporalAuth {
  return temporalAuth(process.env, endpoints.tls);
}

function storeOptions(config?: RunConfig): ObjectStoreOptions {
  const s3 = config?.storage.s3;
  const endpoint = s3?.endpoint ?? process.env.SAE_S3_ENDPOINT ?? undefined;
  const dev = readDevState();
  // The dev stack's S3 server has fixed local credentials; real endpoints use the AWS chain.
  const devCredentials = dev && endpoint === dev.info.s3.endpoint ? dev.info.s3 : undefined;
  return {
    s3: {
      endpoint,
      region: s3?.region ?? devCredentials?.region ?? undefined,
      forcePathStyle: s3?.forcePathStyle ?? undefined,
      accessKeyId: devCredentials?.accessKeyId,
      secretAccessKey: devCredentials?.secretAccessKey,
    },
  };
}

export async function connectClient(endpoints: Endpoints): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: endpoints.address,
      connectTimeout: 5000,
      ...endpointAuth(endpoints),
    });
  } catch (err) {
    throw new Error(
      `cannot reach the Temporal server at ${endpoints.address} (${(err as Error).message}). ` +
        'Start the local one with `npx sa-engine dev up`, or pass --address / set TEMPORAL_ADDRESS.',
    );
  }
  return new Client({ connection, namespace: endpoints.namespace });
}

/** Link to a workflow in the Temporal Web UI, when the UI is known. */
export function workflowUrl(endpoints: Endpoints, workflowId: string): string | undefined {
  if (!endpoints.uiUrl) return undefined;
  return `${endpoints.uiUrl}/namespaces/${encodeURIComponent(endpoints.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
