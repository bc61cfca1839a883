// What `sa-engine status` prints about a run, from Temporal alone (its queries while it runs, its
// result or failure in the history once closed), so no worker needs to be up for a closed run.
import type { Client } from '@temporalio/client';
import { innermostMessage } from '../lib/innermost-cause.ts';
import { joinUri } from '../lib/object-store/uri.ts';
import type { Stage3Progress } from '../workflows/stage3.ts';
import type { datasetRun, DatasetRunResult } from '../workflows/dataset-run.ts';
import { readProgress } from './runs.ts';

/**
 * What `sa-engine status` prints: where a running run is, and for a closed one how it ended with
 * its figures and outputs (from its result in the history, so no worker needs to be up).
 */
export async function describeRun(client: Client, runId: string): Promise<string[]> {
  const handle = client.workflow.getHandle<typeof datasetRun>(runId);
  const { status, memo } = await handle.describe();
  if (status.name === 'RUNNING') {
    const progress = await readProgress(client, handle).catch(() => undefined);
    if (!progress) return [`${runId}: RUNNING (no worker has answered yet)`];
    const lines = [`${runId}: RUNNING, stage ${progress.run.stage}`];
    if (progress.stage3) lines.push(`  stage3   ${describeStage3(progress.stage3)}`);
    return lines;
  }
  try {
    const output = (memo?.config as { output?: string } | undefined)?.output;
    const where = (key: string) => (output ? joinUri(output, key) : key);
    return [`${runId}: ${status.name}`, ...describeResult(await handle.result(), where)];
  } catch (err) {
    return [`${runId}: ${status.name}`, `  reason   ${innermostMessage(err)}`];
  }
}

function describeResult(result: DatasetRunResult, where: (key: string) => string): string[] {
  const lines: string[] = [];
  if (result.stage3) lines.push(`  stage3   ${describeStage3({ ...result.stage3, running: 0 })}`);
  const { dataset, audit } = result;
  lines.push(`  dataset  ${dataset.images} images, ${dataset.masks} masks, ${dataset.imagesFailed} failed`);
  lines.push(`  manifest ${where(dataset.manifestKey)}`, `  stats    ${where(dataset.statsKey)}`);
  if (dataset.imagesFailed > 0) lines.push(`  failed   ${where(dataset.failedKey)}`);
  if (audit) {
    const share = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
    lines.push(
      `  audit    mean IoU ${audit.meanIou?.toFixed(3) ?? 'n/a'}, ${share(audit.shareAbove090)} above 0.90, ` +
        `${share(audit.shareAbove075)} above 0.75 on ${audit.imagesAudited} images`,
      `  report   ${where(audit.reportHtmlKey)}`,
    );
  }
  return lines;
}

/** The innermost message of a failed run: the error that a retry could not fix. */

export function describeStage3(p: Stage3Progress): string {
  return `${p.imagesDone + p.imagesFailed}/${p.images} images (${p.imagesFailed} failed), ${p.masks} masks, shards ${p.shardsDone}/${p.shards}`;
}
