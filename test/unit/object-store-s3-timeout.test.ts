// A stalled S3 request fails instead of hanging: the endpoint is a local TCP server that accepts
// connections and then says nothing (or stops in the middle of a body), as a wedged proxy or
// server does. No S3 server is needed; nothing leaves 127.0.0.1.
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectStoreError, S3ObjectStore } from '../../lib/object-store.ts';

let server: Server | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

/** A server that accepts and then does `onRequest` with the socket; returns its endpoint. */
async function stallingServer(onRequest: (socket: Socket) => void): Promise<string> {
  server = createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.once('data', () => onRequest(socket));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return `http://127.0.0.1:${address.port}`;
}

function storeAt(endpoint: string): S3ObjectStore {
  return new S3ObjectStore('bucket', 'images', {
    endpoint,
    accessKeyId: 'test',
    secretAccessKey: 'test-secret',
    idleTimeoutMs: 300,
  });
}

async function timedGet(store: S3ObjectStore): Promise<{ error: unknown; ms: number }> {
  const started = Date.now();
  const error = await store.get('a.jpg').then(
    () => undefined,
    (err: unknown) => err,
  );
  await store.close();
  return { error, ms: Date.now() - started };
}

describe('S3 request timeouts', () => {
  it('a GET to a server that never answers fails with a retryable timeout error', async () => {
    const endpoint = await stallingServer(() => {}); // reads the request, never answers
    const { error, ms } = await timedGet(storeAt(endpoint));
    expect(error).toBeInstanceOf(ObjectStoreError);
    expect(error).toMatchObject({ retryable: true, uri: 's3://bucket/images/a.jpg' });
    expect((error as Error).message).toBe(
      `get s3://bucket/images/a.jpg: no data from ${endpoint} for 300 ms, gave up (TimeoutError)`,
    );
    // The SDK's own attempts (3) each wait out the idle timeout; nowhere near a hang.
    expect(ms).toBeLessThan(5_000);
  }, 15_000);

  it('a GET whose body stops half-way fails the same way', async () => {
    const endpoint = await stallingServer((socket) =>
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8'),
    );
    const { error, ms } = await timedGet(storeAt(endpoint));
    expect(error).toBeInstanceOf(ObjectStoreError);
    expect(error).toMatchObject({ retryable: true });
    expect((error as Error).message).toMatch(/no data from .* for 300 ms, gave up \(TimeoutError\)/);
    expect(ms).toBeLessThan(5_000);
  }, 15_000);
});
