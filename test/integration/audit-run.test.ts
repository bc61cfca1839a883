// The audit as a user runs it: a stage-3 run over real GrabCut photos (images in the S3 server),
// then `sa-engine audit RUN` against the human masks (128 = the unlabelled band, ignored). Checks
// the report is written, the gate figures are consistent, and the run's own outputs are untouched.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRun } from '../../client/runs.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { runLayout } from '../../lib/run-layout.ts';
import type { RunningWorkers } from '../../workers/run-workers.ts';
import { testStack } from '../helpers/stack.ts';
import {
  stage3Config,
  startTestWorkers,
  storeOptionsFor,
  writeStage3Images,
  type Stage3Fixture,
} from '../helpers/stage3-fixture.ts';

const realData = process.env.SAE_REAL_DATA;
const stack = testStack();
const run = promisify(execFile);

describe.skipIf(!realData)(
  'sa-engine audit on GrabCut photos (set SAE_REAL_DATA to the shared data folder to run)',
  () => {
    let connection: Connection;
    let workers: RunningWorkers;
    let fixture: Stage3Fixture;

    beforeAll(async () => {
      connection = await Connection.connect({ address: stack.temporal.address });
      workers = await startTestWorkers(stack);
      fixture = await writeStage3Images(stack, 0);
      const grabcut = join(realData!, 'grabcut');
      for (const name of readdirSync(join(grabcut, 'images')).sort().slice(0, 4)) {
        await fixture.images.put(name, readFileSync(join(grabcut, 'images', name)));
      }
      const gt = openObjectStore(gtUri(fixture), storeOptionsFor(stack));
      for (const name of readdirSync(join(grabcut, 'gt')))
        await gt.put(name, readFileSync(join(grabcut, 'gt', name)));
    });

    afterAll(async () => {
      await workers?.shutdown();
      await connection?.close();
    });

    it('writes the report and changes nothing else of the run', async () => {
      const client = new Client({ connection, namespace: stack.temporal.namespace });
      const config = stage3Config(fixture, stack, { pointsPerSide: 8 });
      await (await startRun(client, config)).result();
      const before = await snapshot(fixture);

      const gt = gtUri(fixture);
      const env = {
        ...process.env,
        SAE_S3_ENDPOINT: stack.s3.endpoint,
        AWS_ACCESS_KEY_ID: stack.s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: stack.s3.secretAccessKey,
        AWS_REGION: stack.s3.region,
      };
      const args = ['bin/sa-engine.mjs', 'audit', config.run, '--output', config.output, '--reference', gt];
      args.push('--format', 'png', '--ignore-value', '128', '--address', stack.temporal.address);
      const { stdout } = await run('node', args, { env, timeout: 240_000 });
      expect(stdout).toMatch(/Audited 4 images, 4 human masks/);
      expect(stdout).toMatch(/IoU > 0\.90: .*%.*\(paper: 94%\)/);

      const report = JSON.parse(
        (await fixture.out.get(runLayout.auditReportJson(config.run))).toString('utf8'),
      );
      expect(report.run).toBe(config.run);
      expect(report.reference).toMatchObject({ format: 'png', ignoreValue: 128, unmatchedImages: 46 });
      expect(report.sample).toMatchObject({ candidates: 4, audited: 4 });
      expect(report.masks.human).toBe(4);
      const html = (await fixture.out.get(runLayout.auditReportHtml(config.run))).toString('utf8');
      expect(html).toContain('<svg');
      expect(html).not.toMatch(/src="https?:/);
      // An audit writes under audit/ only.
      const after = await snapshot(fixture);
      for (const [key, digest] of before) expect(after.get(key)).toBe(digest);
      expect([...after.keys()].filter((k) => !before.has(k)).every((k) => k.includes('/audit/'))).toBe(true);
    });
  },
);

async function snapshot(fixture: Stage3Fixture): Promise<Map<string, string>> {
  const digests = new Map<string, string>();
  for await (const key of fixture.out.listKeys('')) {
    digests.set(
      key,
      createHash('sha256')
        .update(await fixture.out.get(key))
        .digest('hex'),
    );
  }
  return digests;
}

/** The human masks sit beside the run's images and output, under the fixture's prefix. */
function gtUri(fixture: Stage3Fixture): string {
  return fixture.imagesUri.replace(/images$/, 'gt');
}
