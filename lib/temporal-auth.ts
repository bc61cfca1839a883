// How sa-engine authenticates to a Temporal server that is not the local dev stack: mTLS (a
// self-hosted cluster or Temporal Cloud) or an API key (Temporal Cloud). The environment variables
// are Temporal's own (its CLI and SDKs read the same names), so one Kubernetes Secret serves every
// process. The API key comes only from the environment: a config file is not a place for secrets.
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';

/** `temporal.tls` of a run config: paths, never the certificates themselves. */
export interface TemporalTlsSettings {
  clientCertPath?: string | null;
  clientKeyPath?: string | null;
  serverCaCertPath?: string | null;
  serverName?: string | null;
}

/** What Connection.connect and NativeConnection.connect take besides the address. */
export interface TemporalAuth {
  /** undefined: plaintext (the dev stack, a cluster-internal frontend). */
  tls?: TLSConfig;
  apiKey?: string;
}

export const TEMPORAL_AUTH_ENV = {
  apiKey: 'TEMPORAL_API_KEY',
  tls: 'TEMPORAL_TLS',
  clientCertPath: 'TEMPORAL_TLS_CLIENT_CERT_PATH',
  clientKeyPath: 'TEMPORAL_TLS_CLIENT_KEY_PATH',
  serverCaCertPath: 'TEMPORAL_TLS_SERVER_CA_CERT_PATH',
  serverName: 'TEMPORAL_TLS_SERVER_NAME',
} as const;

export class TemporalAuthError extends Error {
  override name = 'TemporalAuthError';
}

/** The environment wins over the config file, field by field (as TEMPORAL_ADDRESS does). */
export function temporalAuth(
  env: NodeJS.ProcessEnv = process.env,
  config?: TemporalTlsSettings | null,
): TemporalAuth {
  const setting = (field: keyof TemporalTlsSettings) =>
    nonEmpty(env[TEMPORAL_AUTH_ENV[field]]) ?? nonEmpty(config?.[field]);
  const apiKey = nonEmpty(env[TEMPORAL_AUTH_ENV.apiKey]);
  const tlsSwitch = parseSwitch(env[TEMPORAL_AUTH_ENV.tls]);
  const certPath = setting('clientCertPath');
  const keyPath = setting('clientKeyPath');
  const caPath = setting('serverCaCertPath');
  const serverName = setting('serverName');

  if ((certPath === undefined) !== (keyPath === undefined)) {
    throw new TemporalAuthError(
      `mTLS needs both ${TEMPORAL_AUTH_ENV.clientCertPath} and ${TEMPORAL_AUTH_ENV.clientKeyPath} ` +
        '(or temporal.tls.clientCertPath and clientKeyPath), or neither',
    );
  }
  const wantsTls =
    apiKey !== undefined || certPath !== undefined || caPath !== undefined || serverName !== undefined;
  if (tlsSwitch === false && wantsTls) {
    throw new TemporalAuthError(
      `${TEMPORAL_AUTH_ENV.tls}=false, but an API key or TLS files are set: they need TLS`,
    );
  }
  if (!wantsTls && tlsSwitch !== true) return {};

  const tls: TLSConfig = {};
  if (certPath !== undefined && keyPath !== undefined) {
    tls.clientCertPair = {
      crt: readPem(certPath, TEMPORAL_AUTH_ENV.clientCertPath),
      key: readPem(keyPath, TEMPORAL_AUTH_ENV.clientKeyPath),
    };
  }
  if (caPath !== undefined) tls.serverRootCACertificate = readPem(caPath, TEMPORAL_AUTH_ENV.serverCaCertPath);
  if (serverName !== undefined) tls.serverNameOverride = serverName;
  return apiKey === undefined ? { tls } : { tls, apiKey };
}

/** For logs: how a process connects, without the secrets. */
export function describeTemporalAuth(auth: TemporalAuth): string {
  if (!auth.tls) return 'plaintext';
  if (auth.apiKey !== undefined) return 'TLS + API key';
  return auth.tls.clientCertPair ? 'mTLS' : 'TLS';
}

function readPem(path: string, variable: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TemporalAuthError(
      `cannot read ${path} (${variable} or temporal.tls): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

function parseSwitch(value: string | undefined): boolean | undefined {
  const text = nonEmpty(value)?.toLowerCase();
  if (text === undefined) return undefined;
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  throw new TemporalAuthError(`${TEMPORAL_AUTH_ENV.tls} must be true or false, got "${value}"`);
}

function nonEmpty(value: string | null | undefined): string | undefined {
  return value === undefined || value === null || value.trim() === '' ? undefined : value;
}
