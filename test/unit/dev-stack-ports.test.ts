import { createServer, type Server } from 'node:net';
import { clearLockedPorts } from 'get-port';
import { afterEach, describe, expect, it } from 'vitest';
import { ephemeralPortFloor, freePort, LOOPBACK } from '../../infra/dev-stack.ts';

const servers: Server[] = [];

function listenOn(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject);
    server.listen(port, LOOPBACK, () => resolve(server));
    servers.push(server);
  });
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

describe('freePort', () => {
  it('picks ports below the range outgoing connections take theirs from', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(ephemeralPortFloor());
    }
    // Drawn at random, not in order: two processes starting stacks at once rarely collide.
    expect(new Set(ports).size).toBeGreaterThan(15);
  });

  it('keeps the preferred port when it is free, and picks another when it is taken', async () => {
    const preferred = await freePort();
    clearLockedPorts(); // get-port holds back, for a while, a port it handed out in this process
    expect(await freePort(preferred)).toBe(preferred);

    await listenOn(preferred);
    const other = await freePort(preferred);
    expect(other).not.toBe(preferred);
    expect(other).toBeLessThan(ephemeralPortFloor());
  });
});
