// The fully automatic stage end to end on the real dev stack: images in the S3 server, the
// reference model through onnxruntime-node, workflows on the Temporal dev server.
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun } from '../../client/run-status.ts';
import { RunAlreadyExistsError, runDryRun, startRun } from '../../client/runs.ts';
import { decompressRle, decodeRle, rleArea } from '../../lib/rle.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { readShardResult } from '../../lib/stage3/shard-runner.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { shardWorkflowId } from '../../workflows/stage3.ts';
import { stage3WorkflowId } from '../../workflows/dataset-run.ts';
import { SAE_IMAGES_DONE, SAE_IMAGES_FAILED, SAE_RUN, SAE_STAGE } from '../../workflows/search-attributes.ts';
import { testStack } from '../helpers/stack.ts';
import {
  stage3Config,
  startTestWorkers,
  writeStage3Images,
  type Stage3Fixture,
} from '../helpers/stage3-fixture.ts';
import { innermostMessage } from '../../lib/innermost-cause.ts';

const stack = testStack();

describe('a stage-3 dataset run', () => {
  let connection: Connection;
  let client: Client;
  let workers: RunningWorkers;
  let fixture: Stage3Fixture;

  beforeAll(async () => {
    connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace });
    workers = await startTestWorkers(stack);
    fixture = await writeStage3Images(stack, 5, {
      'empty.jpg': Buffer.alloc(0),
      'notes.jpg': Buffer.from('this is a text file with an image extension\n'),
    });
  });

  afterAll(async () => {
    await workers?.shutdown();
    await connection?.close();
  });

  it('a dry run reads every header, names unreadable files and estimates the work, without the model', async () => {
    const config = stage3Config(fixture, stack);
    const result = await runDryRun(client, config);
    expect(result).toMatchObject({ images: 7, imagesDone: 5, imagesFailed: 2, masks: 0, shards: 3 });
    // 4×4 points, no crop layers: one encoder run and 16 prompts per readable image.
    expect(result.work).toMatchObject({ encoderRuns: 5, prompts: 5 * 16 });
    expect(await fixture.out.exists(runLayout.masks(config.run, 0))).toBe(false);

    // The real run will use the dry run's plan; a dry run of another shard size may not.
    const otherShards = stage3Config(fixture, stack, { shardSize: 2 });
    const refused = runDryRun(client, { ...otherShards, run: config.run });
    await expect(refused).rejects.toThrow(WorkflowFailedError);
    await expect(refused.catch((err: Error) => innermostMessage(err))).resolves.toMatch(
      /planned from other inputs \(shardSize: 3, now 2\)/,
    );
  });

  it('segments every image, records broken ones, writes statistics, and refuses a second start', async () => {
    const config = stage3Config(fixture, stack);
    const handle = await startRun(client, config);
    const result = await handle.result();

    expect(result.stage3).toMatchObject({ images: 7, imagesDone: 5, imagesFailed: 2, shards: 3 });
    // One SA-1B file per readable image, whose masks decode to their recorded areas.
    let masks = 0;
    for (let shard = 0; shard < 3; shard++) {
      const lines = (await readShardResult(fixture.out, config.run, shard))!;
      for (const line of lines) {
        if (fixture.brokenImages.some((name) => line.key.endsWith(`/${name}`))) {
          expect(line.status).toBe('failed');
          expect(line.error).toMatch(/ImageError|EmptyImageError|UnsupportedImageError|CorruptImageError/);
          continue;
        }
        expect(line.status).toBe('done');
        const sa1b = JSON.parse(
          (await fixture.out.get(runLayout.masks(config.run, line.id))).toString('utf8'),
        );
        expect(sa1b.image).toMatchObject({ image_id: line.id, width: line.w, height: line.h });
        for (const ann of sa1b.annotations) {
          const rle = decompressRle(ann.segmentation);
          expect(rleArea(rle)).toBe(ann.area);
          expect(decodeRle(rle).length).toBe(line.w! * line.h!);
        }
        masks += sa1b.annotations.length;
      }
    }
    expect(result.stage3!.masks).toBe(masks);
    expect(result.dataset).toMatchObject({ images: 5, imagesFailed: 2, masks });
    const stats = JSON.parse((await fixture.out.get(runLayout.datasetStats(config.run))).toString('utf8'));
    expect(stats.masks).toBe(masks);

    // Visible in the UI: the stage and shard workflows carry the run's search attributes.
    const stage3 = await client.workflow.getHandle(stage3WorkflowId(config.run)).describe();
    expect(stage3.typedSearchAttributes.get(SAE_RUN)).toBe(config.run);
    expect(stage3.typedSearchAttributes.get(SAE_IMAGES_DONE)).toBe(5);
    expect(stage3.typedSearchAttributes.get(SAE_IMAGES_FAILED)).toBe(2);
    const shard = await client.workflow.getHandle(shardWorkflowId(config.run, 0)).describe();
    expect(shard.typedSearchAttributes.get(SAE_STAGE)).toBe('stage3');
    const run = await handle.describe();
    expect(run.typedSearchAttributes.get(SAE_STAGE)).toBe('done');

    await expect(startRun(client, config)).rejects.toBeInstanceOf(RunAlreadyExistsError);

    // `sa-engine status` of the finished run: its figures and where its outputs are.
    const status = (await describeRun(client, config.run)).join('\n');
    expect(status).toContain(`${config.run}: COMPLETED`);
    expect(status).toContain("stage 3    fully automatic, with the run's model");
    expect(status).toMatch(new RegExp(`█+ 7/7 images \\(2 failed\\), ${masks} masks, shards 3/3`));
    expect(status).toContain(`dataset    5 images, ${masks} masks, 2 failed`);
    expect(status).toContain(`report     ${fixture.out.uri(runLayout.engineReport(config.run))}`);
    expect(status).toContain(`manifest ${fixture.out.uri(runLayout.datasetManifest(config.run))}`);
  });
});
