// One stage-1 annotation task on the real dev stack (Temporal dev server, S3 server, the
// orchestration worker): claims under a lease, submissions through an Update with a validator,
// every accepted mask in storage once before its submit returns, refusals that say why.
import { randomUUID } from 'node:crypto';
import { Client, Connection, WorkflowUpdateFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openObjectStore, type ObjectStore } from '../../lib/object-store.ts';
import { compressRle, encodeMask, type CocoRle } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { Submission } from '../../lib/stage1/submission.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { annotationTask } from '../../workflows/stage1-task.ts';
import {
  annotationTaskWorkflowId,
  claimTaskUpdate,
  closeTaskSignal,
  finishTaskUpdate,
  submitMaskUpdate,
  taskStateQuery,
} from '../../lib/stage1/task-messages.ts';
import { keysUnder, startTestWorkers, storeOptionsFor } from '../helpers/stage3-fixture.ts';
import { testStack } from '../helpers/stack.ts';

const stack = testStack();
const H = 30;
const W = 40;

/** A filled rectangle as COCO RLE, the size of the task's image. */
function rectMask(x0: number, y0: number, x1: number, y1: number, h = H, w = W): CocoRle {
  const pixels = new Uint8Array(h * w);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) pixels[y * w + x] = 1;
  return compressRle(encodeMask(pixels, h, w));
}

function submission(annotator: string, submissionId: string, mask = rectMask(2, 2, 10, 12)): Submission {
  return { annotator, submissionId, mask, seconds: 12.5, clicks: 3 };
}

/** The reason an Update was refused with. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => new Error('accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  return (err as WorkflowUpdateFailedError).cause?.message ?? '';
}

describe('a stage-1 annotation task', () => {
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  let out: ObjectStore;
  let outputUri: string;

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    workers = await startTestWorkers(stack, [TASK_QUEUES.orchestration]);
    outputUri = `s3://${stack.s3.bucket}/stage1-${randomUUID().slice(0, 8)}/out`;
    out = openObjectStore(outputUri, storeOptionsFor(stack));
  });
  afterAll(async () => {
    await workers?.shutdown();
    await connection?.close();
  });

  function startTask(runId: string, leaseSeconds = 300) {
    return client.workflow.start(annotationTask, {
      taskQueue: TASK_QUEUES.orchestration,
      workflowId: annotationTaskWorkflowId(runId, 0, 7),
      args: [
        {
          runId,
          outputUri,
          round: 0,
          image: { id: 7, uri: 's3://photos/img-7.jpg', width: W, height: H },
          model: 'sae-ref@4',
          leaseSeconds,
        },
      ],
    });
  }

  it('takes masks from the annotator holding its lease, stores each once, and completes when they finish', async () => {
    const runId = `task-${randomUUID().slice(0, 8)}`;
    const task = await startTask(runId);
    const lease = await task.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'ann' }] });
    expect(lease.annotator).toBe('ann');

    // Another annotator can neither claim nor submit.
    expect(await refusal(task.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'bob' }] }))).toBe(
      'task 7 is held by another annotator',
    );
    expect(await refusal(task.executeUpdate(submitMaskUpdate, { args: [submission('bob', 'b-1')] }))).toBe(
      'task 7 is held by another annotator',
    );
    // Bad masks are refused with the reason.
    const refusedMask = (mask: CocoRle) =>
      refusal(task.executeUpdate(submitMaskUpdate, { args: [submission('ann', 'bad', mask)] }));
    expect(await refusedMask(rectMask(0, 0, 5, 5, H, W + 1))).toBe(
      'the mask is 41×30 (w×h), the image 40×30',
    );
    expect(await refusedMask(rectMask(0, 0, 0, 0))).toBe('the mask is empty');
    expect(await refusedMask({ size: [H, W], counts: '' })).toMatch(
      /^the mask's RLE is malformed: RLE counts add up to 0 pixels/,
    );
    expect(await refusedMask({ size: [H, W], counts: '!!' })).toMatch(/^the mask's RLE is malformed/);
    expect(
      await refusal(
        task.executeUpdate(submitMaskUpdate, {
          args: [{ ...submission('ann', '../x'), submissionId: '../x' }],
        }),
      ),
    ).toBe('submissionId must be 1–64 letters, digits, "-" or "_"');

    // Two masks, the second sent twice (a client retry): stored once, the same answer both times.
    const first = await task.executeUpdate(submitMaskUpdate, { args: [submission('ann', 'm-1')] });
    const second = submission('ann', 'm-2', rectMask(20, 5, 35, 25));
    const [a, b] = await Promise.all([
      task.executeUpdate(submitMaskUpdate, { args: [second] }),
      task.executeUpdate(submitMaskUpdate, { args: [second] }),
    ]);
    expect(first.index).toBe(0);
    expect(a).toEqual(b);
    expect(a.index).toBe(1);
    const prefix = runLayout.stage1Annotation(runId, 0, 7, 'x').replace(/x\.json$/, '');
    expect((await keysUnder(out, prefix)).sort()).toEqual([`${prefix}m-1.json`, `${prefix}m-2.json`]);
    const stored = JSON.parse((await out.get(`${prefix}m-2.json`)).toString('utf8'));
    expect(stored).toMatchObject({ run: runId, round: 0, imageId: 7, annotator: 'ann', model: 'sae-ref@4' });
    expect(stored.mask).toEqual(second.mask);
    expect(await task.query(taskStateQuery)).toMatchObject({ masks: 2, finished: false });

    expect(await refusal(task.executeUpdate(finishTaskUpdate, { args: [{ annotator: 'bob' }] }))).toBe(
      'task 7 is held by another annotator',
    );
    await task.executeUpdate(finishTaskUpdate, { args: [{ annotator: 'ann' }] });
    expect(await task.result()).toEqual({ masks: 2, annotators: ['ann'], closedBy: 'annotator' });
  });

  it('returns to the pool when its lease expires, and completes when the round closes', async () => {
    const runId = `task-${randomUUID().slice(0, 8)}`;
    const task = await startTask(runId, 1);
    await task.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'ann' }] });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await refusal(task.executeUpdate(submitMaskUpdate, { args: [submission('ann', 'late')] }))).toBe(
      'you hold no lease on task 7 (expired or never claimed)',
    );
    expect((await task.executeUpdate(claimTaskUpdate, { args: [{ annotator: 'bob' }] })).annotator).toBe(
      'bob',
    );
    await task.executeUpdate(submitMaskUpdate, { args: [submission('bob', 'b-1')] });
    await task.signal(closeTaskSignal);
    expect(await task.result()).toEqual({ masks: 1, annotators: ['bob'], closedBy: 'round' });
  });
});
