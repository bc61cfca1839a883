import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { endpointAuth, resolveEndpoints } from '../../cli/endpoints.ts';
import { temporalTlsEnv } from '../../cli/local-workers.ts';
import type { RunConfig } from '../../lib/run-config.ts';
import { describeTemporalAuth, temporalAuth } from '../../lib/temporal-auth.ts';

const dir = mkdtempSync(join(tmpdir(), 'sae-auth-'));
const cert = join(dir, 'client.pem');
const key = join(dir, 'client.key');
const ca = join(dir, 'ca.pem');
writeFileSync(cert, 'CERT');
writeFileSync(key, 'KEY');
writeFileSync(ca, 'CA');

describe('temporalAuth', () => {
  it('is plaintext with nothing set (the dev stack)', () => {
    expect(temporalAuth({})).toEqual({});
    expect(describeTemporalAuth(temporalAuth({}))).toBe('plaintext');
  });

  it('takes an API key from the environment, with TLS (Temporal Cloud)', () => {
    const auth = temporalAuth({ TEMPORAL_API_KEY: 'k-123' });
    expect(auth).toEqual({ tls: {}, apiKey: 'k-123' });
    expect(describeTemporalAuth(auth)).toBe('TLS + API key');
  });

  it('reads an mTLS pair, a CA and a server name from the environment', () => {
    const auth = temporalAuth({
      TEMPORAL_TLS_CLIENT_CERT_PATH: cert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: key,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca,
      TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
    });
    expect(Buffer.from(auth.tls!.clientCertPair!.crt).toString()).toBe('CERT');
    expect(Buffer.from(auth.tls!.clientCertPair!.key).toString()).toBe('KEY');
    expect(Buffer.from(auth.tls!.serverRootCACertificate!).toString()).toBe('CA');
    expect(auth.tls!.serverNameOverride).toBe('temporal.internal');
    expect(describeTemporalAuth(auth)).toBe('mTLS');
  });

  it('takes paths from the config, and the environment wins field by field', () => {
    const auth = temporalAuth(
      { TEMPORAL_TLS_SERVER_NAME: 'from-env' },
      { clientCertPath: cert, clientKeyPath: key, serverName: 'from-config' },
    );
    expect(auth.tls!.clientCertPair).toBeDefined();
    expect(auth.tls!.serverNameOverride).toBe('from-env');
  });

  it('turns TLS on with system roots through TEMPORAL_TLS', () => {
    expect(temporalAuth({ TEMPORAL_TLS: 'true' })).toEqual({ tls: {} });
    expect(temporalAuth({ TEMPORAL_TLS: '0' })).toEqual({});
  });

  it('refuses half an mTLS pair, an unreadable file, a bad switch and TLS off with a key', () => {
    expect(() => temporalAuth({ TEMPORAL_TLS_CLIENT_CERT_PATH: cert })).toThrow(
      /mTLS needs both TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH/,
    );
    expect(() =>
      temporalAuth({
        TEMPORAL_TLS_CLIENT_CERT_PATH: join(dir, 'nope.pem'),
        TEMPORAL_TLS_CLIENT_KEY_PATH: key,
      }),
    ).toThrow(/cannot read .*nope\.pem \(TEMPORAL_TLS_CLIENT_CERT_PATH or temporal\.tls\): ENOENT/);
    expect(() => temporalAuth({ TEMPORAL_TLS: 'yes' })).toThrow(/TEMPORAL_TLS must be true or false/);
    expect(() => temporalAuth({ TEMPORAL_TLS: 'false', TEMPORAL_API_KEY: 'k' })).toThrow(/need TLS/);
  });
});

describe('the CLI reads TLS files when it connects, not when it resolves where to connect', () => {
  const missing = join(dir, 'missing.pem');
  const config = {
    temporal: {
      address: '127.0.0.1:7233',
      namespace: 'default',
      tls: { clientCertPath: missing, clientKeyPath: key, serverCaCertPath: null, serverName: 'from-config' },
    },
    storage: {},
  } as unknown as RunConfig;

  it('resolveEndpoints keeps the paths; endpointAuth reads them and names the one it cannot read', () => {
    const endpoints = resolveEndpoints({}, config);
    expect(endpoints.tls).toEqual(config.temporal.tls);
    expect(() => endpointAuth(endpoints)).toThrow(/cannot read .*missing\.pem/);
  });

  it("passes the config's paths to the local inference worker as Temporal's variables", () => {
    expect(temporalTlsEnv(resolveEndpoints({}, config))).toEqual({
      TEMPORAL_TLS_CLIENT_CERT_PATH: missing,
      TEMPORAL_TLS_CLIENT_KEY_PATH: key,
      TEMPORAL_TLS_SERVER_NAME: 'from-config',
    });
    expect(temporalTlsEnv(resolveEndpoints({}))).toEqual({});
  });
});
