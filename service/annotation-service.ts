// The annotation service of stage 1 (`sa-engine annotate serve`): an HTTP API over one run's
// annotation tasks, with the Temporal client behind it, and the browser tool (web/) beside it.
//
//   POST /api/tasks/next                    claim a free task (204: none left now)
//   GET  /api/tasks/:round/:image           the task, while you hold it
//   GET  /api/tasks/:round/:image/image     the image as JPEG, EXIF rotation applied
//   GET  /api/tasks/:round/:image/embedding the image's embedding file (lib/sam/embedding-file.ts)
//   POST /api/tasks/:round/:image/masks     submit one mask {submissionId, mask, seconds, clicks}
//   POST /api/tasks/:round/:image/finish    done with the image
//   POST /api/tasks/:round/:image/skip      give it back (not to you again)
//   POST /api/tasks/:round/:image/flag      {reason}: the image cannot be annotated
//   GET  /api/tasks/:round/:image/prefill   stage 2: the pre-filled masks (lib/stage2/prefill-store.ts)
//   POST /api/tasks/:round/:image/prefill/:index/reject
//                                           {reason?}: delete a pre-filled mask (kept as rejected)
//   GET  /api/model, /api/model/decoder.onnx, /api/model/data/:name   [?id=<model id>]
//                                           the decoder that assists (and its external weights):
//                                           the run's model, or the one a task names; its click
//                                           decoder (readPromptDecoder: the folded one if it has it)
//
// Every /api call needs `Authorization: Bearer <token>` (./annotators.ts). The task workflow's
// validators decide what an annotator may do; this service adds only what they cannot see: who the
// caller is, and which storage keys a task gives access to (its image and its embedding, derived
// from the task's own state, never from the request).
import fastifyStatic from '@fastify/static';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import sharp from 'sharp';
import { claimFirst, freeTaskIds } from '../lib/stage1/round-tasks.ts';
import { loadImage } from '../lib/images/image-io.ts';
import { ObjectNotFoundError } from '../lib/object-store.ts';
import type { StoreCache } from '../lib/object-store/uri.ts';
import { runLayout } from '../lib/run-layout.ts';
import { ModelLocator, UnknownModelError } from '../lib/models/model-locator.ts';
import { readModelPackage, readPromptDecoder, type OnnxInMemory } from '../lib/sam/model-package.ts';
import type { Submission } from '../lib/stage1/submission.ts';
import {
  annotationTaskWorkflowId,
  finishTaskUpdate,
  flagTaskUpdate,
  rejectPrefillUpdate,
  releaseTaskUpdate,
  submitMaskUpdate,
  taskStateQuery,
  type AnnotationTaskView,
} from '../lib/stage1/task-messages.ts';
import { readPrefill } from '../lib/stage2/prefill-store.ts';
import type { AnnotatorAccounts } from './annotators.ts';

export interface AnnotationServiceOptions {
  client: Client;
  runId: string;
  outputUri: string;
  stores: StoreCache;
  accounts: AnnotatorAccounts;
  /** A local model package folder: its decoder is served to the browser. */
  modelDir: string;
  /**
   * Where the packages of other model ids are (a run that retrains: its registry versions); a
   * task names the model that assists it, and the browser asks for that model's decoder.
   */
  models?: ModelLocator;
  /** The built browser tool (web/dist); absent: the API alone. */
  webDir?: string;
  /** Largest request body in bytes; a mask of a 24 MP image is well under the default. */
  bodyLimit?: number;
  logger?: boolean;
}

/** What the API says about a task. */
export interface TaskResponse {
  task: string;
  round: number;
  imageId: number;
  /** The image's file name, e.g. for a simulated annotator to find its intent. */
  imageName: string;
  width: number;
  height: number;
  model: string;
  masks: number;
  leaseExpiresAt: number;
  /** Stage 2: the pre-filled masks the image arrives with, and the indices deleted so far. */
  prefill?: { detector: string; masks: number; rejected: number[] };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    annotator: string;
  }
}

const TASK_PARAMS = {
  type: 'object',
  properties: { round: { type: 'integer', minimum: 0 }, image: { type: 'integer', minimum: 0 } },
  required: ['round', 'image'],
} as const;

export async function createAnnotationService(opts: AnnotationServiceOptions): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: opts.bodyLimit ?? 8 * 2 ** 20, logger: opts.logger ?? false });
  const models = opts.models ?? (await ModelLocator.open(opts.modelDir));
  const decoders = new Map<string, Promise<OnnxInMemory>>();
  /** The decoder of a model id (default: the run's own), read once per model. */
  const decoderOf = (id: string = models.baseId): Promise<OnnxInMemory> => {
    let decoder = decoders.get(id);
    if (!decoder) {
      decoder = models
        .dirFor(id)
        .then(readModelPackage)
        .then(readPromptDecoder)
        .catch((err: unknown) => {
          decoders.delete(id);
          if (err instanceof UnknownModelError) throw new HttpError(404, err.message);
          throw err;
        });
      decoders.set(id, decoder);
    }
    return decoder;
  };
  await decoderOf(); // a broken package fails the service at start, not at the first click
  const sendModelFile = async (reply: FastifyReply, bytes: Uint8Array) =>
    reply
      .type('application/octet-stream')
      .header('Cache-Control', 'private, max-age=86400')
      .send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const out = opts.stores.open(opts.outputUri);

  // Multithreaded WebAssembly (onnxruntime-web with threads) needs a cross-origin isolated page.
  app.addHook('onSend', async (_req, reply) => {
    reply.header('Cross-Origin-Opener-Policy', 'same-origin');
    reply.header('Cross-Origin-Embedder-Policy', 'require-corp');
    reply.header('Cross-Origin-Resource-Policy', 'same-origin');
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof HttpError) return reply.status(err.status).send({ error: err.message });
    if (err instanceof WorkflowUpdateFailedError)
      return reply.status(409).send({ error: err.cause?.message ?? err.message });
    if (err instanceof WorkflowNotFoundError) return reply.status(404).send({ error: 'no such task' });
    if (err.statusCode && err.statusCode < 500)
      return reply.status(err.statusCode).send({ error: err.message });
    app.log.error(err);
    return reply.status(500).send({ error: 'internal error; see the service log' });
  });

  // A cluster's probes (infra/helm/sa-engine): no token, nothing about the run.
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async () => ({ status: 'ready' }));

  app.register(
    async (api) => {
      api.addHook('onRequest', async (req) => {
        const header = req.headers.authorization ?? '';
        const token = /^Bearer (\S+)$/.exec(header)?.[1];
        if (!token) throw new HttpError(401, 'missing token: send "Authorization: Bearer <token>"');
        const annotator = await opts.accounts.verify(token);
        if (!annotator) throw new HttpError(401, 'unknown token');
        req.annotator = annotator;
      });

      api.get('/me', async (req) => ({ annotator: req.annotator }));

      api.post('/tasks/next', async (req, reply) => {
        const candidates = await freeTaskIds(opts.client, opts.runId, 20);
        const claimed = await claimFirst(opts.client, shuffled(candidates), req.annotator);
        if (!claimed) return reply.status(204).send();
        const view = await taskView(opts.client, claimed.taskId);
        return describe(view, claimed.lease.expiresAt);
      });

      const taskRoute = { schema: { params: TASK_PARAMS } };
      type TaskRequest = FastifyRequest<{ Params: { round: number; image: number } }>;

      /** The task, if the caller holds it; refuses otherwise. */
      const heldTask = async (req: TaskRequest): Promise<AnnotationTaskView> => {
        const view = await taskView(opts.client, taskId(req));
        if (view.finished)
          throw new HttpError(409, `task ${req.params.round}/${req.params.image} is finished`);
        if (view.holder?.annotator !== req.annotator)
          throw new HttpError(403, `you hold no lease on task ${req.params.round}/${req.params.image}`);
        return view;
      };
      const taskId = (req: TaskRequest) =>
        annotationTaskWorkflowId(opts.runId, req.params.round, req.params.image);
      const update = (req: TaskRequest) => opts.client.workflow.getHandle(taskId(req));

      api.get('/tasks/:round/:image', taskRoute, async (req: TaskRequest) => {
        const view = await heldTask(req);
        return describe(view, view.holder!.expiresAt);
      });

      api.get('/tasks/:round/:image/image', taskRoute, async (req: TaskRequest, reply) => {
        const view = await heldTask(req);
        const { store, key } = opts.stores.locate(view.image.uri);
        const decoded = await loadImage(await readObject(store.get(key), view.image.uri), {
          name: view.image.uri,
        });
        const jpeg = await sharp(decoded.data, {
          raw: { width: decoded.width, height: decoded.height, channels: 3 },
        })
          .jpeg({ quality: 92 })
          .toBuffer();
        return reply.type('image/jpeg').header('Cache-Control', 'private, max-age=3600').send(jpeg);
      });

      api.get('/tasks/:round/:image/embedding', taskRoute, async (req: TaskRequest, reply) => {
        const view = await heldTask(req);
        const key = runLayout.embedding(view.runId, view.image.id);
        const bytes = await readObject(out.get(key), out.uri(key));
        return reply
          .type('application/octet-stream')
          .header('Cache-Control', 'private, max-age=3600')
          .send(bytes);
      });

      api.post('/tasks/:round/:image/masks', taskRoute, async (req: TaskRequest) => {
        const body = (req.body ?? {}) as Partial<Submission>;
        const submission = { ...body, annotator: req.annotator } as Submission;
        return update(req).executeUpdate(submitMaskUpdate, { args: [submission] });
      });

      api.post('/tasks/:round/:image/finish', taskRoute, async (req: TaskRequest) =>
        update(req).executeUpdate(finishTaskUpdate, { args: [{ annotator: req.annotator }] }),
      );

      api.post('/tasks/:round/:image/skip', taskRoute, async (req: TaskRequest) => {
        await update(req).executeUpdate(releaseTaskUpdate, { args: [{ annotator: req.annotator }] });
        return { skipped: true };
      });

      api.get('/tasks/:round/:image/prefill', taskRoute, async (req: TaskRequest) => {
        const view = await heldTask(req);
        if (!view.prefill)
          throw new HttpError(404, `task ${req.params.round}/${req.params.image} has no pre-fill`);
        const key = runLayout.stage2Prefill(view.runId, view.image.id);
        const prefill = await readPrefill(out, key);
        if (!prefill) throw new HttpError(410, `${out.uri(key)} is gone from storage`);
        return prefill;
      });

      const prefillRoute = {
        schema: {
          params: {
            ...TASK_PARAMS,
            properties: { ...TASK_PARAMS.properties, index: { type: 'integer', minimum: 0 } },
            required: [...TASK_PARAMS.required, 'index'],
          },
        },
      };
      type PrefillRequest = FastifyRequest<{ Params: { round: number; image: number; index: number } }>;
      api.post('/tasks/:round/:image/prefill/:index/reject', prefillRoute, async (req: PrefillRequest) => {
        const reason = String((req.body as { reason?: unknown } | undefined)?.reason ?? '');
        return update(req).executeUpdate(rejectPrefillUpdate, {
          args: [{ annotator: req.annotator, index: req.params.index, reason }],
        });
      });

      api.post('/tasks/:round/:image/flag', taskRoute, async (req: TaskRequest) => {
        const reason = String((req.body as { reason?: unknown } | undefined)?.reason ?? '');
        await update(req).executeUpdate(flagTaskUpdate, { args: [{ annotator: req.annotator, reason }] });
        return { flagged: true };
      });

      // ?id=<model id> names the model a task says assists it; without it, the run's own model.
      type ModelRequest = FastifyRequest<{ Querystring: { id?: string }; Params: { name?: string } }>;
      api.get('/model', async (req: ModelRequest) => {
        const id = req.query.id ?? models.baseId;
        return { id, externalData: (await decoderOf(id)).externalData.map((file) => file.path) };
      });
      api.get('/model/decoder.onnx', async (req: ModelRequest, reply) =>
        sendModelFile(reply, (await decoderOf(req.query.id)).model),
      );
      api.get('/model/data/:name', async (req: ModelRequest, reply) => {
        const file = (await decoderOf(req.query.id)).externalData.find((f) => f.path === req.params.name);
        if (!file) throw new HttpError(404, 'no such model file');
        return sendModelFile(reply, file.data);
      });
    },
    { prefix: '/api' },
  );

  if (opts.webDir) await app.register(fastifyStatic, { root: opts.webDir });
  return app;
}

async function taskView(client: Client, workflowId: string): Promise<AnnotationTaskView> {
  return client.workflow.getHandle(workflowId).query(taskStateQuery);
}

function describe(view: AnnotationTaskView, leaseExpiresAt: number): TaskResponse {
  const { image } = view;
  return {
    task: `${view.round}/${image.id}`,
    round: view.round,
    imageId: image.id,
    imageName: image.uri.slice(image.uri.lastIndexOf('/') + 1),
    width: image.width,
    height: image.height,
    model: view.model,
    masks: view.masks,
    leaseExpiresAt,
    ...(view.prefill ? { prefill: { ...view.prefill, rejected: view.rejectedPrefill ?? [] } } : {}),
  };
}

/** An object a task refers to; a missing one is the service's problem to report, not a 500. */
async function readObject(read: Promise<Buffer>, uri: string): Promise<Buffer> {
  try {
    return await read;
  } catch (err) {
    if (err instanceof ObjectNotFoundError) throw new HttpError(410, `${uri} is gone from storage`);
    throw err;
  }
}

/** Annotators asking at once should not all try the same task first. */
function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}
