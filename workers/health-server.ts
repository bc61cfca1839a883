// The probes a cluster asks a worker process: /healthz (alive: the event loop answers) and /readyz
// (every worker polls its queue; 503 once SIGTERM started the drain). Workers serve no traffic,
// but readiness tells a rollout when the new pod has really joined its task queue.
import Fastify, { type FastifyInstance } from 'fastify';

export interface HealthServer {
  /** e.g. http://0.0.0.0:8080 */
  url: string;
  close(): Promise<void>;
}

export async function startHealthServer(opts: {
  port: number;
  host?: string;
  ready: () => boolean;
}): Promise<HealthServer> {
  const app: FastifyInstance = Fastify({ logger: false });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const ready = opts.ready();
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready' });
  });
  const url = await app.listen({ port: opts.port, host: opts.host ?? '0.0.0.0' });
  return { url, close: () => app.close() };
}
