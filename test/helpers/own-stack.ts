// A private dev stack (Temporal + S3) in a temp folder for a test that stops or restarts a server,
// so the suite's shared stack is never disturbed. Everything it starts is torn down by the
// `cleanups` the test runs after each case, in reverse order.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { clearLockedPorts } from 'get-port';
import { startDevStack, startTemporal, stopProcess, type DevStack } from '../../infra/dev-stack.ts';
import type { StackInfo } from '../../infra/stack-info.ts';

export type Cleanups = (() => Promise<unknown>)[];

export interface OwnStack {
  stateDir: string;
  stack: DevStack;
  info: StackInfo;
}

export async function startOwnStack(cleanups: Cleanups, name = 'sae-own-stack-'): Promise<OwnStack> {
  const stateDir = mkdtempSync(join(tmpdir(), name));
  cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
  const stack = await startDevStack({ stateDir, detached: false, s3: { bucket: 'sa-engine-test' } });
  const own: OwnStack = { stateDir, stack, info: stack.info };
  // Reads `own` at cleanup time: a restarted server has a new pid.
  cleanups.push(() =>
    Promise.all([stopProcess(own.stack.temporal.process.pid), stopProcess(own.stack.s3.process.pid)]),
  );
  return own;
}

export async function connectClient(stack: StackInfo, cleanups: Cleanups): Promise<Client> {
  const connection = await Connection.connect({ address: stack.temporal.address });
  cleanups.push(() => connection.close());
  return new Client({ connection, namespace: stack.temporal.namespace });
}

/**
 * Stops the stack's Temporal server and starts it again on its SQLite file, on the same ports.
 * get-port (behind freePort) refuses, for 15-30 s, a port it already handed out in this process,
 * even once it is free again; a restart on the same port asks for exactly that one.
 */
export async function restartTemporal(own: OwnStack): Promise<void> {
  const { address, uiUrl } = own.info.temporal;
  await stopProcess(own.stack.temporal.process.pid);
  clearLockedPorts();
  own.stack.temporal = await startTemporal({
    stateDir: own.stateDir,
    detached: false,
    port: Number(address.split(':')[1]),
    uiPort: Number(new URL(uiUrl).port),
  });
  if (own.stack.temporal.endpoint.address !== address)
    throw new Error(`Temporal came back at ${own.stack.temporal.endpoint.address}, not ${address}`);
}
