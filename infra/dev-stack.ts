// Starts and stops the local dev stack: a Temporal dev server (SQLite file, Web UI, sa-engine's
// search attributes) and versitygw, a real S3-compatible server, both on loopback only.
// `sa-engine dev up` runs them detached; the integration-test global setup runs them as children.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import getPort from 'get-port';
import type { S3Endpoint, StackInfo, TemporalEndpoint } from './stack-info.ts';
import { toolPath } from './tools.ts';

export const LOOPBACK = '127.0.0.1';

/** Search attributes the workflows keep current; registered when the dev server starts. */
export const SEARCH_ATTRIBUTES = {
  SaeRun: 'Keyword',
  SaeStage: 'Keyword',
  SaeImagesDone: 'Int',
  SaeImagesFailed: 'Int',
  SaeMasks: 'Int',
  SaeModel: 'Keyword',
  SaeRound: 'Keyword',
  SaeLeaseUntil: 'Datetime',
} as const;

const { IndexedValueType } = proto.temporal.api.enums.v1;
const INDEXED_VALUE_TYPES = {
  Keyword: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  Int: IndexedValueType.INDEXED_VALUE_TYPE_INT,
  Datetime: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
} as const;

/** The S3 server holds only local test data, so a fixed, documented credential pair is fine. */
export const DEV_S3_CREDENTIALS = { accessKeyId: 'sa-engine-dev', secretAccessKey: 'sa-engine-dev-secret' };

export interface ManagedProcess {
  name: string;
  pid: number;
  /** The binary it runs; `dev down` checks /proc/<pid>/cmdline against it before signalling. */
  command: string;
  logFile: string;
}

export interface ServerOptions {
  stateDir: string;
  /** Detached processes outlive the caller (dev up); attached ones die with their parent's cleanup. */
  detached: boolean;
}

export interface TemporalOptions extends ServerOptions {
  port?: number;
  uiPort?: number;
  namespace?: string;
}

export interface S3Options extends ServerOptions {
  port?: number;
  bucket?: string;
  region?: string;
}

/**
 * The preferred port when free, otherwise a free loopback port below the kernel's ephemeral range.
 * A server on an ephemeral port can lose it while it restarts: any outgoing connection on the
 * machine may be given that port as its local end, and the server then cannot bind it again.
 */
export async function freePort(preferred?: number): Promise<number> {
  const candidates = randomPortsBelow(ephemeralPortFloor(), 64);
  return getPort({ host: LOOPBACK, port: preferred === undefined ? candidates : [preferred, ...candidates] });
}

const LOWEST_STACK_PORT = 10_000;

/** Linux says where outgoing connections take their ports; elsewhere 32768 is below both usual ranges. */
export function ephemeralPortFloor(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const floor = Number(low);
    return Number.isInteger(floor) && floor > LOWEST_STACK_PORT + 1000 ? floor : 32_768;
  } catch {
    return 32_768;
  }
}

/** Random rather than in order, so that test processes starting stacks at once rarely ask for the same port. */
function randomPortsBelow(ceiling: number, count: number): number[] {
  return Array.from({ length: count }, () => randomInt(LOWEST_STACK_PORT, ceiling));
}

function launch(
  name: string,
  command: string,
  args: string[],
  opts: ServerOptions,
): { child: ChildProcess; proc: ManagedProcess } {
  const logDir = join(opts.stateDir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const logFile = join(logDir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { detached: opts.detached, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  if (opts.detached) child.unref();
  return { child, proc: { name, pid: child.pid, command, logFile } };
}

/** Polls `ready` until it resolves true, failing early when the process has already exited. */
async function waitUntilReady(
  name: string,
  child: ChildProcess,
  logFile: string,
  ready: () => Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${name} exited (${child.exitCode ?? child.signalCode}) before it was ready; ${logFile} ends:\n` +
          logTail(logFile),
      );
    }
    if (await ready().catch(() => false)) return;
    await sleep(250);
  }
  child.kill('SIGKILL');
  throw new Error(
    `${name} did not become ready within ${timeoutMs / 1000}s; ${logFile} ends:\n` + logTail(logFile),
  );
}

/** The last lines of a log, so a start (or tool build) that failed says why even once its folder is gone. */
export function logTail(logFile: string, lines = 15): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log written)';
  }
}

export interface StartedServer<T> {
  endpoint: T;
  process: ManagedProcess;
  child: ChildProcess;
}

export async function startTemporal(opts: TemporalOptions): Promise<StartedServer<TemporalEndpoint>> {
  const port = await freePort(opts.port);
  const uiPort = await freePort(opts.uiPort);
  const namespace = opts.namespace ?? 'default';
  const binary = toolPath('temporal');
  const args = [
    'server',
    'start-dev',
    '--ip',
    LOOPBACK,
    '--port',
    String(port),
    '--ui-ip',
    LOOPBACK,
    '--ui-port',
    String(uiPort),
    // A SQLite file keeps workflow state across a server restart (tested: the run resumes).
    '--db-filename',
    join(opts.stateDir, 'temporal.sqlite'),
    '--namespace',
    namespace,
    '--log-level',
    'warn',
    ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
  ];
  const { child, proc } = launch('temporal', binary, args, opts);
  const endpoint: TemporalEndpoint = {
    address: `${LOOPBACK}:${port}`,
    namespace,
    uiUrl: `http://${LOOPBACK}:${uiPort}`,
  };
  // A server restarted on an older state file has the search attributes of the sa-engine that made
  // it; the ones added since are registered here.
  await waitUntilReady('temporal', child, proc.logFile, () =>
    temporalAnswers(endpoint, { addMissing: true }),
  );
  return { endpoint, process: proc, child };
}

/**
 * True once the frontend answers and the namespace has sa-engine's search attributes. With
 * `addMissing`, registers those it lacks (and answers false until the server lists them).
 */
export async function temporalAnswers(
  endpoint: Pick<TemporalEndpoint, 'address' | 'namespace'>,
  opts: { addMissing?: boolean } = {},
): Promise<boolean> {
  const connection = await Connection.connect({ address: endpoint.address, connectTimeout: 1000 });
  try {
    const missing = await missingSearchAttributes(connection, endpoint.namespace, opts);
    return missing.length === 0;
  } finally {
    await connection.close();
  }
}

/**
 * sa-engine's search attributes the namespace lacks (before `addMissing` registers them). A dev
 * server gets them at start; a cluster's namespace through `sa-engine namespace prepare`.
 */
export async function missingSearchAttributes(
  connection: Pick<Connection, 'operatorService'>,
  namespace: string,
  opts: { addMissing?: boolean } = {},
): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = Object.entries(SEARCH_ATTRIBUTES).filter(
    ([name]) => customAttributes?.[name] === undefined,
  );
  if (missing.length > 0 && opts.addMissing) {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map(([name, type]) => [name, INDEXED_VALUE_TYPES[type]])),
    });
  }
  return missing.map(([name]) => name);
}

export async function startS3Server(opts: S3Options): Promise<StartedServer<S3Endpoint>> {
  const port = await freePort(opts.port);
  const region = opts.region ?? 'us-east-1';
  const bucket = opts.bucket ?? 'sa-engine';
  // versitygw refuses a metadata folder inside (or even string-prefixed by) its data folder.
  const dataDir = join(opts.stateDir, 's3', 'data');
  const metaDir = join(opts.stateDir, 's3', 'meta');
  mkdirSync(dataDir, { recursive: true });
  mkdirSync(metaDir, { recursive: true });
  const args = [
    '--port',
    `${LOOPBACK}:${port}`,
    '--access',
    DEV_S3_CREDENTIALS.accessKeyId,
    '--secret',
    DEV_S3_CREDENTIALS.secretAccessKey,
    '--region',
    region,
    '--quiet',
    'posix',
    // Object metadata goes to a sidecar folder so the data folder needs no xattr support.
    '--sidecar',
    metaDir,
    dataDir,
  ];
  const { child, proc } = launch('s3', toolPath('versitygw'), args, opts);
  const endpoint: S3Endpoint = {
    endpoint: `http://${LOOPBACK}:${port}`,
    region,
    bucket,
    ...DEV_S3_CREDENTIALS,
  };
  await waitUntilReady('s3', child, proc.logFile, () => ensureBucket(endpoint).then(() => true));
  return { endpoint, process: proc, child };
}

export function s3ClientFor(endpoint: S3Endpoint): S3Client {
  return new S3Client({
    endpoint: endpoint.endpoint,
    region: endpoint.region,
    forcePathStyle: true,
    credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey },
    maxAttempts: 1,
  });
}

/** Creates the bucket unless it already exists (a restarted server keeps its data folder). */
export async function ensureBucket(endpoint: S3Endpoint): Promise<void> {
  const client = s3ClientFor(endpoint);
  try {
    await client.send(new HeadBucketCommand({ Bucket: endpoint.bucket }));
  } catch {
    await client.send(new CreateBucketCommand({ Bucket: endpoint.bucket }));
  } finally {
    client.destroy();
  }
}

export interface DevStack {
  info: StackInfo;
  processes: ManagedProcess[];
  temporal: StartedServer<TemporalEndpoint>;
  s3: StartedServer<S3Endpoint>;
}

export interface DevStackOptions extends ServerOptions {
  temporal?: Omit<TemporalOptions, keyof ServerOptions>;
  s3?: Omit<S3Options, keyof ServerOptions>;
}

export async function startDevStack(opts: DevStackOptions): Promise<DevStack> {
  const base = { stateDir: opts.stateDir, detached: opts.detached };
  const [temporal, s3] = await Promise.allSettled([
    startTemporal({ ...base, ...opts.temporal }),
    startS3Server({ ...base, ...opts.s3 }),
  ]);
  if (temporal.status === 'rejected' || s3.status === 'rejected') {
    // Leave nothing behind: a half-started stack would hold ports and confuse the next `up`.
    for (const started of [temporal, s3])
      if (started.status === 'fulfilled') await stopProcess(started.value.process.pid);
    throw temporal.status === 'rejected' ? temporal.reason : (s3 as PromiseRejectedResult).reason;
  }
  return devStackOf(temporal.value, s3.value);
}

function devStackOf(temporal: StartedServer<TemporalEndpoint>, s3: StartedServer<S3Endpoint>): DevStack {
  return {
    info: { temporal: temporal.endpoint, s3: s3.endpoint },
    processes: [temporal.process, s3.process],
    temporal,
    s3,
  };
}

/** Sends SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await sleep(100);
  }
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  while (isAlive(pid)) await sleep(50);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
