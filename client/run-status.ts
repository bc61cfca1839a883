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
    const roundId =
      progress.run.stage === 'stage2' ? progress.run.stage2WorkflowId : progress.run.stage1WorkflowId;
    if (round) {
      lines.push(
        `  ${progress.run.stage}   ${roundId}: ${round.phase}, ${round.published}/${round.images} tasks published, ` +
          `${round.closed ?? 0} done, ${round.open ?? 0} open, ${round.masks ?? 0} masks` +
          (round.targetMasks === null ? '' : ` (target ${round.targetMasks})`) +
          `, closes by ${new Date(round.closesAt).toISOString()}`,
      );
      if (round.model) lines.push(`  models   ${describeModels(round.model, round.prefill)}`);
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
  for (const round of result.stage2?.rounds ?? []) lines.push(...describeRound(round, where));
  for (const retrain of result.stage2?.detectorRetrains ?? []) {
    const r = retrain.result;
    lines.push(
      `  detector ${retrain.workflowId}: ` +
        (r
          ? `v${r.version} box AP ${r.AP.toFixed(3)}, AP50 ${r.AP50.toFixed(3)}, AR@100 ${r.AR100.toFixed(3)}; ${r.reason}`
          : `failed: ${retrain.error}`),
    );
  }
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
  const lines = [
    `  round ${round.round}  ${summary.masks} masks on ${summary.imagesAnnotated}/${round.published} images ` +
      `(closed: ${round.closedBy}), ${num(summary.masksPerImage.mean)} masks per image, ` +
      `${num(summary.secondsPerMask.median)} s per mask (p90 ${num(summary.secondsPerMask.p90)}), ` +
      `${num(summary.clicksPerMask.mean)} clicks per mask`,
  ];
  if (round.prefill) {
    // Older results have no `prefilled` figures; stage-2 rounds always do.
    const { prefilled, added } = summary;
    lines.push(
      `  prefill  ${describeModels(Object.keys(summary.models).join(', '), round.prefill)}: ` +
        `${prefilled?.masks ?? 0} pre-filled masks kept (${num(prefilled?.perImage ?? null)} per image), ` +
        `${prefilled?.rejected ?? 0} deleted, ${added?.masks ?? 0} added (${num(added?.perImage ?? null)} per image)` +
        (round.prefill.problem ? `; ${round.prefill.problem}` : ''),
    );
  }
  lines.push(`  export   ${where(round.export.cocoKey)}`);
  return lines;
}

/** "SAM sam@v2, detector detector@v1": what assists a stage-2 round. */
function describeModels(sam: string, prefill: RoundResult['prefill']): string {
  return prefill ? `SAM ${sam}, detector ${prefill.detector ?? 'none'}` : `SAM ${sam}`;
}

/** The innermost message of a failed run: the error that a retry could not fix. */

export function describeStage3(p: Stage3Progress): string {
  return `${p.imagesDone + p.imagesFailed}/${p.images} images (${p.imagesFailed} failed), ${p.masks} masks, shards ${p.shardsDone}/${p.shards}`;
}
