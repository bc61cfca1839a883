// `npm run bench:annotate`: how the annotation tool feels. Three measurements in one run:
//
// 1. the SAM decoder per click in Node (onnxruntime-node): the official decoder is the reference the
//    others are read against, beside the package's folded decoder (what the tools run, when the
//    package has one) and how far the folded decoder's masks are from the official ones;
// 2. the same decoders, embedding and clicks in headless Chromium (onnxruntime-web, WebAssembly),
//    with one thread and with several (the page is cross-origin isolated, as the service serves it);
// 3. the annotation service's claim and submit round trips on the real stack (Temporal dev server,
//    S3-compatible server, workers), with `--annotators` clients claiming and submitting at once:
//    first at `--pace` seconds per mask each (a team of people; the paper's annotators took 14–34 s),
//    then back to back (a stress load, far above what that many people make).
//
//   npm run bench:annotate -- [--clicks N] [--annotators N] [--images N] [--pace S] [--model DIR]
//                             [--decoder-only]
//
// The last line is `annotate: browser click p50 X ms, submit p99 Y ms`: the click figure is the
// decoder the tools run (readPromptDecoder) at its best thread count, the submit figure at the given
// pace. Needs /usr/bin/chromium.
import { maskIou } from '../lib/stage1/click-simulator.ts';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import fastifyStatic from '@fastify/static';
import { Client, Connection } from '@temporalio/client';
import Fastify from 'fastify';
import * as ort from 'onnxruntime-node';
import { chromium } from 'playwright-core';
import { startLocalWorkers } from '../cli/local-workers.ts';
import { AnnotationApi } from '../client/annotation-api.ts';
import { quantile } from '../lib/audit/figures.ts';
import { startDevStack, stopProcess } from '../infra/dev-stack.ts';
import { loadImage } from '../lib/images/image-io.ts';
import { openObjectStore } from '../lib/object-store.ts';
import { StoreCache } from '../lib/object-store/uri.ts';
import { compressRle, encodeMask } from '../lib/rle.ts';
import { embeddingFileOf } from '../lib/sam/embedding-file.ts';
import { planMaskUpsample, upsampleMaskLogits } from '../lib/amg/mask-upsample.ts';
import { DECODER_OUTPUTS, decoderFeeds, pickMasks } from '../lib/sam/decoder-prompt.ts';
import {
  readModelPackage,
  readPromptDecoder,
  type ModelPackage,
  type OnnxInMemory,
} from '../lib/sam/model-package.ts';
import { SamSession } from '../lib/sam/session.ts';
import { generateSynthDataset } from '../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { createAnnotationService } from '../service/annotation-service.ts';
import { AnnotatorAccounts } from '../service/annotators.ts';
import { buildWeb } from '../web/build.ts';
import { annotationRound, roundStatusQuery, roundWorkflowId } from '../workflows/stage1-round.ts';
import { REFERENCE_PACKAGE } from './amg-common.ts';

const CHROMIUM = '/usr/bin/chromium';
const { values } = parseArgs({
  options: {
    clicks: { type: 'string', default: '30' },
    annotators: { type: 'string', default: '20' },
    images: { type: 'string', default: '40' },
    pace: { type: 'string', default: '2' },
    // The decoder figures alone, without starting the stack (no last line).
    'decoder-only': { type: 'boolean', default: false },
    model: { type: 'string', default: REFERENCE_PACKAGE },
  },
});
const clicks = Number(values.clicks);
const annotators = Number(values.annotators);
const imageCount = Number(values.images);
const paceSeconds = Number(values.pace);
const MASKS_PER_TASK = 3;

const dir = mkdtempSync(join(tmpdir(), 'sae-bench-annotate-'));
try {
  const pkg = await readModelPackage(values.model);
  const decoders = await clickDecoders(pkg);
  const { embeddingFile, node, agreement } = await nodeDecoders(decoders);
  const browser = await browserDecoders(decoders, embeddingFile);
  const service = values['decoder-only'] ? [] : await serviceRoundTrips();

  const p50 = (xs: number[]) => quantile(xs, 0.5)!;
  const p99 = (xs: number[]) => quantile(xs, 0.99)!;
  const reference = p50(node[0]!.ms);
  console.log(
    `decoder per click (one point; in Chromium through the shown mask at the image's size), ${clicks} clicks, model ${values.model}:`,
  );
  for (const decoder of decoders) {
    console.log(`  ${decoder.label}:`);
    const runs = [
      { where: 'node (onnxruntime-node)', ms: node.find((r) => r.file === decoder.file)!.ms, note: '' },
      ...browser
        .filter((run) => run.file === decoder.file)
        .map((run) => ({
          where: `chromium, ${run.threads} wasm thread(s)`,
          ms: run.ms,
          note: `; cross-origin isolated: ${run.crossOriginIsolated}`,
        })),
    ];
    for (const run of runs)
      console.log(
        `    ${run.where.padEnd(28)} p50 ${p50(run.ms).toFixed(1)} ms, p90 ${quantile(run.ms, 0.9)!.toFixed(1)} ms ` +
          `(${(p50(run.ms) / reference).toFixed(2)}× the official decoder in node${run.note})`,
      );
  }
  if (agreement)
    console.log(
      `  folded vs official masks, ${agreement.count} masks of these clicks: IoU mean ${agreement.mean.toFixed(5)}, ` +
        `min ${agreement.min.toFixed(5)} (goal: within 0.5%, >= 0.995)`,
    );
  for (const run of service) {
    const pace = run.pace > 0 ? `one mask per ${run.pace} s each (jittered ±50%)` : 'back to back';
    console.log(
      `service round trips, ${annotators} annotators at once, ${pace}, ${run.submit.length} masks:`,
    );
    console.log(
      `  claim (next task)  p50 ${p50(run.claim).toFixed(1)} ms, p99 ${p99(run.claim).toFixed(1)} ms`,
    );
    console.log(
      `  submit (one mask)  p50 ${p50(run.submit).toFixed(1)} ms, p99 ${p99(run.submit).toFixed(1)} ms`,
    );
  }
  const clickDecoder = decoders.at(-1)!.file; // the folded one when the package has it
  const best = Math.min(...browser.filter((run) => run.file === clickDecoder).map((run) => p50(run.ms)));
  if (service.length > 0)
    console.log(
      `annotate: browser click p50 ${best.toFixed(0)} ms, submit p99 ${p99(service[0]!.submit).toFixed(0)} ms`,
    );
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/** A decoder graph the bench times, as the browser is served it. */
interface ClickDecoder {
  label: string;
  file: string;
  onnx: OnnxInMemory;
}

/** The official decoder (cut to the outputs clicks read), then the folded one if the package has it. */
async function clickDecoders(pkg: ModelPackage): Promise<ClickDecoder[]> {
  const decoders = [
    {
      label: `official decoder (${pkg.decoder.file})`,
      file: 'decoder.onnx',
      onnx: await readPromptDecoder({ ...pkg, foldedDecoder: null }),
    },
  ];
  if (pkg.foldedDecoder)
    decoders.push({
      label: `folded decoder (${pkg.foldedDecoder.file}, what the tools run)`,
      file: 'decoder_folded.onnx',
      onnx: await readPromptDecoder(pkg),
    });
  return decoders;
}

/** The bench's clicks: points spread over the image, so each click is a new prompt (as web/src/bench.ts). */
function clickAt(i: number, [h, w]: [number, number]): [number, number] {
  return [(((i * 37) % 97) / 97) * (w - 1), (((i * 53) % 89) / 89) * (h - 1)];
}

/**
 * A synthetic image's embedding (float16, as rounds store it), each decoder's time per click in
 * Node, and how far the folded decoder's upsampled masks are from the official decoder's.
 */
async function nodeDecoders(decoders: ClickDecoder[]) {
  const files = new Map<string, Uint8Array>();
  await generateSynthDataset({ images: 1, seed: 7, write: async (k, b) => void files.set(k, b) });
  const [name, bytes] = [...files].find(([k]) => k.startsWith('images/'))!;
  const session = await SamSession.load(values.model);
  const embedding = await session.embed(await loadImage(bytes, { name }));
  const embeddingFile = embeddingFileOf(session.modelId, embedding, 'float16');
  await session.release();
  const size = embedding.originalSize;
  const plan = planMaskUpsample(...size);
  const node: { file: string; ms: number[] }[] = [];
  const masks: Float32Array[][] = [];
  for (const decoder of decoders) {
    const graph = await ort.InferenceSession.create(decoder.onnx.model, {
      externalData: decoder.onnx.externalData,
    });
    const ms: number[] = [];
    const logits: Float32Array[] = [];
    for (let i = 0; i < clicks + 3; i++) {
      const feeds: Record<string, ort.Tensor> = { image_embeddings: embedding.tensor };
      for (const [input, [data, dims]] of Object.entries(decoderFeeds({ points: [clickAt(i, size)] }, size)))
        if (graph.inputNames.includes(input)) feeds[input] = new ort.Tensor('float32', data, dims);
      const t0 = performance.now();
      const out = await graph.run(feeds, [...DECODER_OUTPUTS]);
      if (i < 3) continue; // warm-up
      ms.push(performance.now() - t0);
      const picked = pickMasks(
        out.iou_predictions!.data as Float32Array,
        out.low_res_masks!.data as Float32Array,
        true,
      );
      logits.push(...picked.lowResMasks.map((m) => upsampleMaskLogits(m, plan).data));
    }
    await graph.release();
    node.push({ file: decoder.file, ms });
    masks.push(logits);
  }
  const ious =
    masks.length === 2
      ? masks[0]!.map((official, k) => maskIou(binary(official), binary(masks[1]![k]!)))
      : [];
  const agreement =
    ious.length > 0
      ? { count: ious.length, mean: ious.reduce((a, b) => a + b, 0) / ious.length, min: Math.min(...ious) }
      : null;
  return { embeddingFile, node, agreement };
}

/** The mask `logits > 0`. */
function binary(logits: Float32Array): Uint8Array {
  return Uint8Array.from(logits, (v) => (v > 0 ? 1 : 0));
}

/** What web/src/bench.ts leaves on the page. */
interface BenchPage {
  benchResult?: { threads: number; crossOriginIsolated: boolean; ms: number[]; error?: string };
}

/** The bench page of web/ in headless Chromium, served cross-origin isolated, per decoder and thread count. */
async function browserDecoders(decoders: ClickDecoder[], embeddingFile: Buffer) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is needed (apt-get install chromium)`);
  const files = new Map<string, Uint8Array>();
  for (const decoder of decoders) {
    files.set(decoder.file, decoder.onnx.model);
    for (const f of decoder.onnx.externalData) files.set(f.path, f.data);
  }
  const app = Fastify();
  app.addHook('onSend', async (_req, reply) => {
    reply.header('Cross-Origin-Opener-Policy', 'same-origin');
    reply.header('Cross-Origin-Embedder-Policy', 'require-corp');
  });
  app.get('/embedding.bin', async (_req, reply) =>
    reply.type('application/octet-stream').send(embeddingFile),
  );
  app.get('/model/:file', async (req, reply) => {
    const bytes = files.get((req.params as { file: string }).file);
    if (!bytes) return reply.status(404).send();
    return reply.type('application/octet-stream').send(Buffer.from(bytes));
  });
  await app.register(fastifyStatic, { root: await buildWeb(join(dir, 'web')) });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const runs = [];
    for (const decoder of decoders) {
      for (const threads of [...new Set([1, Math.min(4, availableParallelism())])]) {
        const page = await browser.newPage();
        const query = new URLSearchParams({
          threads: String(threads),
          clicks: String(clicks),
          decoder: decoder.file,
          data: decoder.onnx.externalData.map((f) => f.path).join(','),
        });
        await page.goto(`${url}/bench.html?${query}`);
        await page.waitForFunction(() => (globalThis as BenchPage).benchResult !== undefined, undefined, {
          timeout: 300_000,
        });
        const result = (await page.evaluate(() => (globalThis as BenchPage).benchResult))!;
        if (result.error) throw new Error(`browser bench: ${result.error}`);
        runs.push({ ...result, file: decoder.file });
        await page.close();
      }
    }
    return runs;
  } finally {
    await browser.close();
    await app.close();
  }
}

/** Claim and submit round trips of one round, with every annotator at the same pace. */
interface RoundTrips {
  pace: number;
  claim: number[];
  submit: number[];
}

/**
 * Claim → submit → finish by many clients at once through the real service and stack: one round
 * with the annotators at `--pace` seconds per mask (people: 14–34 s in the paper), then one with
 * them back to back (a load far above what that many people make, to show where the stack saturates).
 */
async function serviceRoundTrips(): Promise<RoundTrips[]> {
  const stack = await startDevStack({ stateDir: join(dir, 'stack'), detached: false });
  const endpoints = {
    address: stack.info.temporal.address,
    namespace: stack.info.temporal.namespace,
    storeOptions: {},
  };
  const workers = await startLocalWorkers(endpoints);
  const connection = await Connection.connect({ address: endpoints.address });
  const client = new Client({ connection, namespace: endpoints.namespace });
  const imagesUri = pathToFileURL(join(dir, 'images')).href;
  const outputUri = pathToFileURL(join(dir, 'out')).href;
  const images = openObjectStore(imagesUri);
  const stores = new StoreCache();
  const accounts = new AnnotatorAccounts(stores.open(outputUri));
  const app = await createAnnotationService({
    client,
    runId: 'bench',
    outputUri,
    stores,
    accounts,
    modelDir: values.model,
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const tokens = await Promise.all(Array.from({ length: annotators }, (_, k) => accounts.add(`bench-${k}`)));
  try {
    await generateSynthDataset({
      images: imageCount,
      seed: 11,
      write: (k, b) => images.put(k, Buffer.from(b)),
    });
    const results: RoundTrips[] = [];
    for (const [i, pace] of [paceSeconds, 0].entries()) {
      results.push(await roundTrips(i + 1, pace));
    }
    return results;
  } finally {
    await app.close();
    await workers.shutdown();
    await connection.close();
    await Promise.all(stack.processes.map((p) => stopProcess(p.pid)));
  }

  async function roundTrips(roundNumber: number, pace: number): Promise<RoundTrips> {
    const round = await client.workflow.start(annotationRound, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: roundWorkflowId('bench', roundNumber),
      args: [
        {
          runId: 'bench',
          outputUri,
          round: roundNumber,
          modelUri: pathToFileURL(values.model).href,
          plan: { images: { prefix: `${imagesUri}/images`, extensions: ['jpg', 'png'] }, shardSize: 100 },
          firstImage: 0,
          imageCount,
          embeddingDtype: 'float16',
          embedBatch: 8,
          embedWindow: 1,
          leaseSeconds: 600,
          targetMasks: null,
          deadlineSeconds: 3600,
          pollSeconds: 2,
          tasksPerWorkflowRun: 1000,
        },
      ],
    });
    // Every task is published before the clock starts: this measures the service, not the encoder.
    for (;;) {
      const status = await round.query(roundStatusQuery);
      if (status.published + status.failedImages >= imageCount) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const claim: number[] = [];
    const submit: number[] = [];
    // Jittered so that the annotators do not submit in lockstep.
    const think = () => new Promise((r) => setTimeout(r, pace * 1000 * (0.5 + Math.random())));
    await Promise.all(
      tokens.map(async (token, k) => {
        const api = new AnnotationApi(url, token);
        await think();
        for (;;) {
          let t0 = performance.now();
          const task = await api.next();
          claim.push(performance.now() - t0);
          if (!task) return;
          const pixels = new Uint8Array(task.height * task.width);
          for (let y = 4; y < 40; y++) for (let x = 4; x < 40; x++) pixels[y * task.width + x] = 1;
          const mask = compressRle(encodeMask(pixels, task.height, task.width));
          for (let m = 0; m < MASKS_PER_TASK; m++) {
            await think();
            t0 = performance.now();
            await api.submit(task.task, {
              submissionId: `${roundNumber}-${k}-${task.imageId}-${m}`,
              mask,
              seconds: 10,
              clicks: 3,
            });
            submit.push(performance.now() - t0);
          }
          await api.finish(task.task);
        }
      }),
    );
    await round.result();
    return { pace, claim, submit };
  }
}
