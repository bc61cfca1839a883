// The browser tool in headless Chromium against the real stack: log in with a token, get a task,
// click an object, see the decoder's mask drawn on the canvas (a pixel check), accept it, and find
// the annotation in storage. And a stage-2 task: its pre-filled masks drawn in amber, one deleted
// with the delete tool (kept as rejected), the rest accepted with the image when it is finished.
//
// Needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium); skipped without it.
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { decodeRle, decompressRle, type CocoRle } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { nextClick } from '../../lib/stage1/click-simulator.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { createAnnotationService } from '../../service/annotation-service.ts';
import { AnnotatorAccounts } from '../../service/annotators.ts';
import { buildWeb } from '../../web/build.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { annotationRound, roundStatusQuery, roundWorkflowId } from '../../workflows/stage1-round.ts';
import { readRoundAnnotations } from '../../lib/stage1/round-export.ts';
import { readPrefill } from '../../lib/stage2/prefill-store.ts';
import { REFERENCE_MODEL_URI, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';
import { testRoundSpec } from '../helpers/stage1-fixture.ts';

const CHROMIUM = '/usr/bin/chromium';
/** The committed reference detector: it reads the reference SAM's embeddings. */
const REFERENCE_DETECTOR_URI = REFERENCE_MODEL_URI.replace(/sae-ref$/, 'sae-det');
const stack = testStack();

describe.skipIf(!existsSync(CHROMIUM))(
  `the browser tool in headless Chromium (skipped without ${CHROMIUM})`,
  () => {
    let connection: Connection;
    let client: Client;
    let workers: RunningWorkers;
    let service: FastifyInstance;
    let browser: Browser;
    let baseUrl: string;
    const stores = new StoreCache(storeOptionsFor(stack));
    const prefix = `stage1-browser-${randomUUID().slice(0, 8)}`;
    const runId = `test-${prefix}`;
    const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
    const outputUri = `s3://${stack.s3.bucket}/${prefix}/out`;
    let truth: { name: string; rle: CocoRle };

    beforeAll(async () => {
      connection = await Connection.connect({ address: stack.temporal.address });
      client = new Client({ connection, namespace: stack.temporal.namespace });
      const images = openObjectStore(imagesUri, storeOptionsFor(stack));
      await generateSynthDataset({
        images: 1,
        seed: 31,
        write: (key, bytes) => images.put(key, Buffer.from(bytes)),
      });
      const coco = JSON.parse((await images.get(ANNOTATIONS_KEY)).toString('utf8')) as {
        images: { file_name: string }[];
        annotations: { segmentation: CocoRle; area: number }[];
      };
      const biggest = [...coco.annotations].sort((a, b) => b.area - a.area)[0]!;
      truth = { name: coco.images[0]!.file_name, rle: biggest.segmentation };
      workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration, TASK_QUEUES.inference]);
      service = await createAnnotationService({
        client,
        runId,
        outputUri,
        stores,
        accounts: new AnnotatorAccounts(stores.open(outputUri)),
        modelDir: fileURLToPath(REFERENCE_MODEL_URI),
        webDir: await buildWeb(),
      });
      baseUrl = await service.listen({ host: '127.0.0.1', port: 0 });
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    }, 120_000);
    afterAll(async () => {
      await browser?.close();
      await service?.close();
      await workers?.shutdown();
      await connection?.close();
    });

    it(
      'logs in, clicks an object, draws its mask, and the accepted mask is stored',
      { timeout: 300_000 },
      async () => {
        const round = await client.workflow.start(annotationRound, {
          taskQueue: TASK_QUEUES.orchestration,
          workflowId: roundWorkflowId(runId, 1),
          args: [
            testRoundSpec(
              { runId, outputUri, imagesUri, round: 1, imageCount: 1 },
              { embedBatch: 1, leaseSeconds: 600 },
            ),
          ],
        });
        const token = await new AnnotatorAccounts(stores.open(outputUri)).add('browser');
        // The task exists once the image is embedded.
        for (let i = 0; i < 120 && (await round.query(roundStatusQuery)).published === 0; i++)
          await sleep(500);

        const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
        const errors: string[] = [];
        page.on('pageerror', (err) => errors.push(err.message));
        page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
        const response = await page.goto(baseUrl);
        expect(response?.headers()['cross-origin-embedder-policy']).toBe('require-corp');
        await page.fill('#token', token);
        await page.click('#login button');
        const canvas = page.locator('#canvas');
        await expect.poll(() => canvas.getAttribute('data-task'), { timeout: 60_000 }).toBe('1/0');

        // The deepest point of the biggest object, as a person (or the click simulator) would click.
        const [h, w] = truth.rle.size;
        const click = nextClick(decodeRle(decompressRle(truth.rle)), null, h, w)!;
        const [scale, ox, oy] = (await canvas.getAttribute('data-view'))!.split(',').map(Number) as [
          number,
          number,
          number,
        ];
        const box = (await canvas.boundingBox())!;
        const at = { x: box.x + ox + click.x * scale, y: box.y + oy + click.y * scale };
        const before = await pixelAt(page, at);
        await page.mouse.click(at.x, at.y);
        await expect
          .poll(async () => Number(await canvas.getAttribute('data-mask-pixels')), { timeout: 60_000 })
          .toBeGreaterThan(0);
        // The mask is drawn: the clicked pixel turned towards the overlay's blue.
        const after = await pixelAt(page, { x: at.x + 8, y: at.y + 8 });
        const beforeNear = await pixelAtFromShot(before, 8, 8);
        expect(after.b - after.r).toBeGreaterThan(beforeNear.b - beforeNear.r + 20);
        console.log(`browser decoder: ${await canvas.getAttribute('data-decode-ms')} ms for the first click`);

        await page.keyboard.press('a');
        await expect.poll(() => canvas.getAttribute('data-accepted'), { timeout: 30_000 }).toBe('1');
        const out = stores.open(outputUri);
        const keys: string[] = [];
        for await (const key of out.listKeys(runLayout.stage1AnnotationsPrefix(runId, 1))) keys.push(key);
        expect(keys).toHaveLength(1);
        const record = JSON.parse((await out.get(keys[0]!)).toString('utf8')) as {
          annotator: string;
          clicks: number;
          seconds: number;
        };
        expect(record).toMatchObject({ annotator: 'browser', clicks: 1 });
        expect(record.seconds).toBeGreaterThanOrEqual(0);
        expect(errors).toEqual([]);
        await round.cancel();
      },
    );

    it(
      "shows a stage-2 task's pre-filled masks, deletes one, and the image keeps the rest",
      { timeout: 300_000 },
      async () => {
        const stage2Run = `${runId}-s2`;
        const stage2Service = await createAnnotationService({
          client,
          runId: stage2Run,
          outputUri,
          stores,
          accounts: new AnnotatorAccounts(stores.open(outputUri)),
          modelDir: fileURLToPath(REFERENCE_MODEL_URI),
          webDir: await buildWeb(),
        });
        const url = await stage2Service.listen({ host: '127.0.0.1', port: 0 });
        try {
          const round = await client.workflow.start(annotationRound, {
            taskQueue: TASK_QUEUES.orchestration,
            workflowId: roundWorkflowId(stage2Run, 1, 'stage2'),
            args: [
              testRoundSpec(
                { runId: stage2Run, outputUri, imagesUri, round: 1, imageCount: 1 },
                {
                  embedBatch: 1,
                  leaseSeconds: 600,
                  stage: 'stage2',
                  // Loose filters: the reference models' few best guesses, whatever their scores.
                  prefill: {
                    detectorUri: REFERENCE_DETECTOR_URI,
                    settings: {
                      prompt: 'centre-point',
                      predIouThresh: 0,
                      stabilityScoreThresh: 0,
                      boxNmsThresh: 0.7,
                      batchSize: 16,
                      detect: { scoreThreshold: 0, maxDetections: 4 },
                    },
                  },
                },
              ),
            ],
          });
          const token = await new AnnotatorAccounts(stores.open(outputUri)).add('browser-s2');
          for (let i = 0; i < 120 && (await round.query(roundStatusQuery)).published === 0; i++)
            await sleep(500);
          const out = stores.open(outputUri);
          const prefill = (await readPrefill(out, runLayout.stage2Prefill(stage2Run, 0)))!;
          expect(prefill.masks.length).toBeGreaterThanOrEqual(2);

          const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
          const errors: string[] = [];
          page.on('pageerror', (err) => errors.push(err.message));
          page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
          await page.goto(url);
          await page.fill('#token', token);
          await page.click('#login button');
          const canvas = page.locator('#canvas');
          await expect.poll(() => canvas.getAttribute('data-task'), { timeout: 60_000 }).toBe('1/0');
          await expect
            .poll(() => canvas.getAttribute('data-prefilled'), { timeout: 30_000 })
            .toBe(String(prefill.masks.length));

          // A pixel that only the last pre-filled mask covers (the tool deletes the one on top).
          const last = prefill.masks.length - 1;
          const [h, w] = prefill.size;
          const pixels = prefill.masks.map((m) => decodeRle(decompressRle(m.segmentation)));
          let target = -1;
          for (let i = 0; i < h * w && target < 0; i++)
            if (pixels[last]![i] === 1 && pixels.every((p, k) => k === last || p[i] === 0)) target = i;
          expect(target).toBeGreaterThanOrEqual(0);
          const [x, y] = [target % w, Math.floor(target / w)];
          const [scale, ox, oy] = (await canvas.getAttribute('data-view'))!.split(',').map(Number) as [
            number,
            number,
            number,
          ];
          const box = (await canvas.boundingBox())!;
          // Amber: the pre-filled mask is drawn there, more red than blue.
          const at = { x: box.x + ox + (x + 0.5) * scale, y: box.y + oy + (y + 0.5) * scale };
          const amber = await pixelAt(page, at);
          expect(amber.r - amber.b).toBeGreaterThan(40);

          await page.keyboard.press('d');
          await page.mouse.click(at.x, at.y);
          await expect.poll(() => canvas.getAttribute('data-prefill-deleted'), { timeout: 30_000 }).toBe('1');
          const rejection = JSON.parse(
            (await out.get(runLayout.stage2Rejection(stage2Run, 1, 0, last))).toString('utf8'),
          ) as { annotator: string; mask: CocoRle };
          expect(rejection.annotator).toBe('browser-s2');
          expect(rejection.mask).toEqual(prefill.masks[last]!.segmentation);

          // Next image: the task finishes and the masks nobody deleted join its annotations.
          await page.keyboard.press('n');
          await expect
            .poll(async () => (await readRoundAnnotations(out, stage2Run, 1)).length, { timeout: 60_000 })
            .toBe(prefill.masks.length - 1);
          const kept = await readRoundAnnotations(out, stage2Run, 1);
          expect(kept.every((r) => r.prefilled && r.seconds === 0)).toBe(true);
          expect(kept.map((r) => r.submissionId)).not.toContain(`prefill-${last}`);
          expect(errors).toEqual([]);
          await round.cancel();
        } finally {
          await stage2Service.close();
        }
      },
    );
  },
);

type Shot = { png: Buffer; x: number; y: number };

/** A small screenshot around a page point (to compare before and after). */
async function pixelAt(
  page: import('playwright-core').Page,
  at: { x: number; y: number },
): Promise<{ r: number; g: number; b: number } & Shot> {
  const clip = { x: Math.max(0, at.x - 16), y: Math.max(0, at.y - 16), width: 32, height: 32 };
  const png = await page.screenshot({ clip });
  const { default: sharp } = await import('sharp');
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (Math.round(at.y - clip.y) * info.width + Math.round(at.x - clip.x)) * 3;
  return { r: data[i]!, g: data[i + 1]!, b: data[i + 2]!, png, x: at.x - clip.x, y: at.y - clip.y };
}

async function pixelAtFromShot(
  shot: Shot,
  dx: number,
  dy: number,
): Promise<{ r: number; g: number; b: number }> {
  const { default: sharp } = await import('sharp');
  const { data, info } = await sharp(shot.png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (Math.round(shot.y + dy) * info.width + Math.round(shot.x + dx)) * 3;
  return { r: data[i]!, g: data[i + 1]!, b: data[i + 2]! };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
