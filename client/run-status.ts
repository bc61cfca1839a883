// What `sa-engine status` prints about a run, from Temporal alone (its queries while it runs, its
// result or failure in the history once closed), so no worker needs to be up for a closed run.
import type { Client } from '@temporalio/client';
import { innermostMessage } from '../lib/innermost-cause.ts';
import { joinUri } from '../lib/object-store/uri.ts';
import type { Stage3Progress } from '../workflows/stage3.ts';
import type { datasetRun, DatasetRunResult } from '../workflows/dataset-run.ts';
import type { RoundResult } from '../workflows/stage1-round.ts';
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
    const { round } = progress;
    if (round) {
      lines.push(
        `  stage1   ${progress.run.stage1WorkflowId}: ${round.phase}, ${round.published}/${round.images} tasks published, ` +
          `${round.closed ?? 0} done, ${round.open ?? 0} open, ${round.masks ?? 0} masks` +
          (round.targetMasks === null ? '' : ` (target ${round.targetMasks})`) +
          `, closes by ${new Date(round.closesAt).toISOString()}`,
      );
    }
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
  for (const round of result.stage1 ?? []) lines.push(...describeRound(round, where));
  if (result.stage3) lines.push(`  stage3   ${describeStage3({ ...result.stage3, running: 0 })}`);
  const { dataset, audit } = result;
  if (dataset) {
    lines.push(`  dataset  ${dataset.images} images, ${dataset.masks} masks, ${dataset.imagesFailed} failed`);
    lines.push(`  manifest ${where(dataset.manifestKey)}`, `  stats    ${where(dataset.statsKey)}`);
    if (dataset.imagesFailed > 0) lines.push(`  failed   ${where(dataset.failedKey)}`);
  }
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

/** A closed stage-1 round: its figures and where its export is. */
export function describeRound(round: RoundResult, where: (key: string) => string = (key) => key): string[] {
  const { summary } = round;
  const num = (x: number | null, digits = 1) => (x === null ? 'n/a' : x.toFixed(digits));
  return [
    `  round ${round.round}  ${summary.masks} masks on ${summary.imagesAnnotated}/${round.published} images ` +
      `(closed: ${round.closedBy}), ${num(summary.masksPerImage.mean)} masks per image, ` +
      `${num(summary.secondsPerMask.median)} s per mask (p90 ${num(summary.secondsPerMask.p90)}), ` +
      `${num(summary.clicksPerMask.mean)} clicks per mask`,
    `  export   ${where(round.export.cocoKey)}`,
  ];
}

/** The innermost message of a failed run: the error that a retry could not fix. */

export function describeStage3(p: Stage3Progress): string {
  return `${p.imagesDone + p.imagesFailed}/${p.images} images (${p.imagesFailed} failed), ${p.masks} masks, shards ${p.shardsDone}/${p.shards}`;
}
