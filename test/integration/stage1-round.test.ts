// A stage-1 round on the real stack: the round workflow embeds its images on the inference pool
// and publishes a task per image; the annotation service hands them out over HTTP to three
// simulated annotators, which click on the downloaded embeddings with the reference decoder; the
// round closes when every task is done and exports COCO instances, the training-set manifest and
// its figures. Also: what the service refuses, and why.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnnotationApi, AnnotationApiError } from '../../client/annotation-api.ts';
import { runSimulatedAnnotator } from '../../client/simulated-annotators.ts';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { StoreCache } from '../../lib/object-store/uri.ts';
import { compressRle, decompressRle, encodeMask, rleArea } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { openIntent } from '../../lib/stage1/intent.ts';
import { readShardProvenance } from '../../lib/stage1/provenance.ts';
import type { CocoInstances } from '../../lib/stage1/round-export.ts';
import { DEFAULT_ANNOTATOR } from '../../lib/stage1/simulated-annotator.ts';
import { readPlan } from '../../lib/stage3/shard-plan.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { createAnnotationService } from '../../service/annotation-service.ts';
import { AnnotatorAccounts } from '../../service/annotators.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { annotationRound, roundWorkflowId, type RoundSpec } from '../../workflows/stage1-round.ts';
import { REFERENCE_MODEL_URI, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { askOracle, requireProjectPython } from '../helpers/python-oracle.ts';
import { testStack } from '../helpers/stack.ts';
import { testRoundSpec } from '../helpers/stage1-fixture.ts';

const stack = testStack();
const IMAGES = 6;

describe('a stage-1 round over HTTP', () => {
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  let service: FastifyInstance;
  let baseUrl: string;
  let out: ObjectStore;
  let accounts: AnnotatorAccounts;
  const stores = new StoreCache(storeOptionsFor(stack));
  const prefix = `stage1-round-${randomUUID().slice(0, 8)}`;
  const runId = `test-${prefix}`;
  const imagesUri = `s3://${stack.s3.bucket}/${prefix}/images`;
  const outputUri = `s3://${stack.s3.bucket}/${prefix}/out`;

  beforeAll(async () => {
    requireProjectPython('pycocotools');
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    const images = openObjectStore(imagesUri, storeOptionsFor(stack));
    await generateSynthDataset({
      images: IMAGES,
      seed: 23,
      write: (key, bytes) => images.put(key, Buffer.from(bytes)),
    });
    out = stores.open(outputUri);
    accounts = new AnnotatorAccounts(out);
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration, TASK_QUEUES.inference]);
    service = await createAnnotationService({
      client,
      runId,
      outputUri,
      stores,
      accounts,
      modelDir: fileURLToPath(REFERENCE_MODEL_URI),
    });
    baseUrl = await service.listen({ host: '127.0.0.1', port: 0 });
  }, 120_000);
  afterAll(async () => {
    await service?.close();
    await workers?.shutdown();
    await connection?.close();
  });

  const roundSpec = (round: number, overrides: Partial<RoundSpec> = {}) =>
    testRoundSpec(
      { runId, outputUri, imagesUri, round, imageCount: IMAGES },
      // Shards of 4 and 4 tasks per workflow run: the round reads two shards and continues as new.
      {
        plan: { images: { prefix: `${imagesUri}/images`, extensions: ['jpg', 'png'] }, shardSize: 4 },
        embedWindow: 2,
        tasksPerWorkflowRun: 4,
        ...overrides,
      },
    );

  it(
    'three simulated annotators annotate every image over HTTP; the export reads back',
    { timeout: 600_000 },
    async () => {
      const handle = await client.workflow.start(annotationRound, {
        taskQueue: TASK_QUEUES.orchestration,
        workflowId: roundWorkflowId(runId, 1),
        args: [roundSpec(1)],
      });
      const session = await SamSession.load(fileURLToPath(REFERENCE_MODEL_URI));
      const intent = await openIntent(stores, {
        format: 'coco',
        uri: `${imagesUri}/${ANNOTATIONS_KEY}`,
        ignoreValue: null,
      });
      let closed = false;
      const result = handle.result().finally(() => (closed = true));
      const names = ['ann-a', 'ann-b', 'ann-c'];
      const sims = await Promise.all(
        names.map(async (name, index) =>
          runSimulatedAnnotator({
            api: new AnnotationApi(baseUrl, await accounts.add(name)),
            index,
            sessionFor: async () => session,
            intent,
            model: { ...DEFAULT_ANNOTATOR, maxClicks: 3, minArea: 400 },
            maxMasksPerImage: 3,
            idleMs: 300,
            stop: () => closed,
          }),
        ),
      );
      const round = await result;

      expect(round.closedBy).toBe('done');
      expect(round.published).toBe(IMAGES);
      const masks = sims.reduce((s, r) => s + r.masks, 0);
      expect(sims.reduce((s, r) => s + r.images, 0)).toBe(IMAGES);
      expect(round.summary.masks).toBe(masks);
      expect(round.summary.imagesAnnotated).toBe(IMAGES);
      expect(Object.keys(round.summary.annotators).length).toBeGreaterThan(0);
      expect(round.summary.models).toEqual({ [session.modelId]: masks });
      expect(round.summary.secondsPerMask.median).toBeGreaterThan(0);

      // Every accepted mask is in storage once, and in the COCO export once.
      const stored: string[] = [];
      for await (const key of out.listKeys(runLayout.stage1AnnotationsPrefix(runId, 1))) stored.push(key);
      expect(stored).toHaveLength(masks);
      const coco = JSON.parse((await out.get(round.export.cocoKey)).toString('utf8')) as CocoInstances;
      expect(coco.annotations).toHaveLength(masks);
      expect(coco.images).toHaveLength(IMAGES);
      for (const a of coco.annotations) {
        expect(a.area).toBe(rleArea(decompressRle(a.segmentation)));
        expect(a.area).toBeGreaterThan(0);
      }
      for (const image of coco.images) {
        expect(
          await out.exists(
            `${runLayout.stage1RoundCoco(runId, 1).replace(/instances\.json$/, 'images')}/${image.file_name}`,
          ),
        ).toBe(true);
      }
      // pycocotools reads the export as a dataset user would; areas and boxes agree with ours.
      const file = join(mkdtempSync(join(tmpdir(), 'sae-coco-')), 'instances.json');
      writeFileSync(file, JSON.stringify(coco));
      const oracle = askOracle<{
        images: number;
        annotations: { id: number; area: number; bbox: number[]; decoded: number }[];
      }>('coco_export_oracle.py', { file });
      expect(oracle.images).toBe(IMAGES);
      expect(oracle.annotations).toEqual(
        coco.annotations.map((a) => ({ id: a.id, area: a.area, bbox: a.bbox, decoded: a.area })),
      );
      const manifest = JSON.parse((await out.get(round.export.trainingSetKey)).toString('utf8')) as Record<
        string,
        string
      >;
      expect(manifest).toMatchObject({ format: 'coco-instances/1', annotations: round.export.cocoKey });
      // The dataset manifest's provenance: each stored mask once, under the shard of its image.
      const plan = (await readPlan(out, runId))!;
      const provenance: string[] = [];
      for (let shard = 0; shard < plan.shardCount; shard++) {
        for (const [id, annotated] of await readShardProvenance(out, runId, shard)) {
          expect(Math.floor(id / plan.shardSize)).toBe(shard);
          for (const m of annotated) {
            expect(m).toMatchObject({ stage: 'stage1', round: 1, model: session.modelId });
            provenance.push(m.annotation);
          }
        }
      }
      expect(provenance.sort()).toEqual([...stored].sort());
      console.log(
        `stage-1 round: ${masks} masks on ${IMAGES} images; seconds per mask median ${round.summary.secondsPerMask.median}, ` +
          `p90 ${round.summary.secondsPerMask.p90}; clicks per mask ${round.summary.clicksPerMask.mean?.toFixed(2)}`,
      );
    },
  );

  it('refuses what an annotator may not do, with the reason', { timeout: 300_000 }, async () => {
    const handle = await client.workflow.start(annotationRound, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: roundWorkflowId(runId, 2),
      args: [roundSpec(2, { imageCount: 2, tasksPerWorkflowRun: 100 })],
    });
    const alice = new AnnotationApi(baseUrl, await accounts.add('alice'));
    const bob = new AnnotationApi(baseUrl, await accounts.add('bob'));
    const status = (p: Promise<unknown>) =>
      p.then(
        () => 200,
        (err: unknown) => (err instanceof AnnotationApiError ? err.status : -1),
      );

    expect(await status(new AnnotationApi(baseUrl, 'sae_not-a-token').next())).toBe(401);
    const missing = await fetch(new URL('/api/tasks/next', baseUrl), { method: 'POST' });
    expect(missing.status).toBe(401);

    let task = await alice.next();
    for (let i = 0; task === undefined && i < 60; i++) {
      await new Promise((r) => setTimeout(r, 500)); // the round is still embedding
      task = await alice.next();
    }
    expect(task).toBeDefined();
    const t = task!.task;
    // Another annotator's task: not its image, not its embedding, no submit.
    expect(await status(bob.image(t))).toBe(403);
    expect(await status(bob.embedding(t))).toBe(403);
    const square = new Uint8Array(task!.height * task!.width);
    for (let y = 2; y < 12; y++) for (let x = 2; x < 12; x++) square[y * task!.width + x] = 1;
    const goodMask = compressRle(encodeMask(square, task!.height, task!.width));
    await expect(
      bob.submit(t, { submissionId: 'x1', mask: goodMask, seconds: 1, clicks: 1 }),
    ).rejects.toThrow(/409.*held by another/);
    // Malformed, wrong-size and empty masks.
    const bad = (mask: unknown) =>
      alice.call('POST', `/api/tasks/${t}/masks`, { submissionId: 'b1', mask, seconds: 1, clicks: 1 });
    await expect(bad({ size: [task!.height, task!.width], counts: '!!!' })).rejects.toThrow(
      /409.*RLE is malformed/,
    );
    await expect(bad({ size: [3, 3], counts: '0' })).rejects.toThrow(/409.*the mask is 3×3/);
    await expect(
      bad(compressRle(encodeMask(new Uint8Array(task!.height * task!.width), task!.height, task!.width))),
    ).rejects.toThrow(/409.*empty/);
    // Oversized body.
    const huge = {
      submissionId: 'h1',
      mask: { size: [1, 1], counts: 'x'.repeat(9 * 2 ** 20) },
      seconds: 1,
      clicks: 1,
    };
    expect(await status(alice.call('POST', `/api/tasks/${t}/masks`, huge))).toBe(413);
    // Not a task id.
    expect(await status(alice.call('GET', '/api/tasks/2/..%2F..%2Fsecret'))).toBe(400);
    // The holder may: image, embedding, one mask (twice with the same id: accepted once).
    expect((await alice.image(t)).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    expect((await alice.embedding(t)).subarray(0, 8).toString()).toBe('SAEEMB01');
    const first = await alice.submit(t, { submissionId: 'dup-1', mask: goodMask, seconds: 3, clicks: 2 });
    const again = await alice.submit(t, { submissionId: 'dup-1', mask: goodMask, seconds: 3, clicks: 2 });
    expect(again.index).toBe(first.index);
    const keys: string[] = [];
    for await (const key of out.listKeys(runLayout.stage1AnnotationsPrefix(runId, 2))) keys.push(key);
    expect(keys).toHaveLength(1);
    // Skipped: bob may take it, alice not again.
    await alice.skip(t);
    expect(await status(alice.task(t))).toBe(403);
    // A flag needs a reason; with one, it is stored and the image leaves the pool.
    const flagged = (await bob.next())!;
    await expect(bob.flag(flagged.task, ' ')).rejects.toThrow(/409.*reason/);
    await bob.flag(flagged.task, 'not a photo: a test card');
    const flags: string[] = [];
    for await (const key of out.listKeys(runLayout.stage1FlagsPrefix(runId, 2))) flags.push(key);
    expect(flags).toEqual([runLayout.stage1Flag(runId, 2, flagged.imageId, 'bob')]);
    expect(await status(bob.task(flagged.task))).toBe(409); // finished

    await handle.cancel();
  });
});
