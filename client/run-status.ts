// What `sa-engine status` prints about a run, from Temporal alone (its queries while it runs, its
// result or failure in the history once closed), so no worker needs to be up for a closed run.
import type { Client } from '@temporalio/client';
import cliProgress from 'cli-progress';
import { innermostMessage } from '../lib/innermost-cause.ts';
import { joinUri } from '../lib/object-store/uri.ts';
import type { AutomaticStageResult, Stage3Progress } from '../workflows/stage3.ts';
import type { datasetRun, DatasetRunResult, RunSoFar } from '../workflows/dataset-run.ts';
import type { RoundResult, RoundStatus } from '../workflows/stage1-round.ts';
import type { RetrainResult } from '../workflows/retrain.ts';
import type { RetrainSummary } from '../workflows/stage1-retraining.ts';
import type { DetectorRetrainSummary } from '../workflows/stage2-detector.ts';
import { readProgress, type RunSnapshot } from './runs.ts';

/**
 * What `sa-engine status` prints: where a running run is, and for a closed one how it ended with
 * its figures and outputs (from its result in the history, so no worker needs to be up).
 */
export async function describeRun(client: Client, runId: string): Promise<string[]> {
  const handle = client.workflow.getHandle<typeof datasetRun>(runId);
  const { status, memo } = await handle.describe();
  const output = (memo?.config as { output?: string } | undefined)?.output;
  const where = (key: string) => (output ? joinUri(output, key) : key);
  if (status.name === 'RUNNING') {
    const progress = await readProgress(client, handle).catch(() => undefined);
    if (!progress) return [`${runId}: RUNNING (no worker has answered yet)`];
    return [
      `${runId}: RUNNING, stage ${progress.run.stage}`,
      ...describeStages(progress.run.done, where, progress),
    ];
  }
  try {
    return [`${runId}: ${status.name}`, ...describeRunResult(await handle.result(), where)];
  } catch (err) {
    return [`${runId}: ${status.name}`, `  reason   ${innermostMessage(err)}`];
  }
}

/** A finished run, stage by stage, then its dataset, audit and report. */
export function describeRunResult(
  result: DatasetRunResult,
  where: (key: string) => string = (k) => k,
): string[] {
  const lines = describeStages(result, where);
  const { dataset, audit, report } = result;
  if (dataset) {
    lines.push(`dataset    ${dataset.images} images, ${dataset.masks} masks, ${dataset.imagesFailed} failed`);
    lines.push(`  manifest ${where(dataset.manifestKey)}`, `  stats    ${where(dataset.statsKey)}`);
    if (dataset.imagesFailed > 0) lines.push(`  failed   ${where(dataset.failedKey)}`);
  }
  if (audit) {
    const share = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
    lines.push(
      `audit      mean IoU ${audit.meanIou?.toFixed(3) ?? 'n/a'}, ${share(audit.shareAbove090)} above 0.90, ` +
        `${share(audit.shareAbove075)} above 0.75 on ${audit.imagesAudited} images`,
      `  report   ${where(audit.reportHtmlKey)}`,
    );
  }
  if (report?.key) lines.push(`report     ${where(report.key)}`);
  else if (report?.error) lines.push(`report     not written: ${report.error}`);
  return lines;
}

/**
 * A line per stage, and under it a line per closed round and training; while the run is `live`,
 * the round or stage running now with a bar.
 */
function describeStages(
  done: RunSoFar & { stage3?: AutomaticStageResult },
  where: (key: string) => string,
  live?: RunSnapshot,
): string[] {
  const lines: string[] = [];
  const stage = live?.run.stage;
  const retrains = (n: 1 | 2) => (done.retrains ?? []).filter((r) => r.trigger.startsWith(`stage ${n}`));
  if (done.stage1 || stage === 'stage1') {
    lines.push('stage 1    assisted-manual annotation');
    for (const round of done.stage1 ?? []) lines.push(...describeRound(round, where));
    for (const retrain of retrains(1)) lines.push(describeRetrain(retrain));
    if (stage === 'stage1' && live?.round)
      lines.push(describeLiveRound(live.run.stage1WorkflowId, live.round));
  }
  if (done.stage2 || stage === 'stage2') {
    lines.push('stage 2    semi-automatic annotation, pre-filled by the detector');
    for (const retrain of done.stage2?.detectorRetrains ?? []) lines.push(describeDetectorRetrain(retrain));
    for (const round of done.stage2?.rounds ?? []) lines.push(...describeRound(round, where));
    for (const retrain of retrains(2)) lines.push(describeRetrain(retrain));
    if (stage === 'stage2' && live?.round)
      lines.push(describeLiveRound(live.run.stage2WorkflowId, live.round));
  }
  const stage3 = live?.stage3 ?? (done.stage3 ? { ...done.stage3, running: 0 } : undefined);
  if (stage3) {
    lines.push(`stage 3    fully automatic, with ${done.stage3Model ?? "the run's model"}`);
    lines.push(`  ${bar(stage3.imagesDone + stage3.imagesFailed, stage3.images)} ${describeStage3(stage3)}`);
  }
  if (live && ['dataset', 'audit', 'report'].includes(live.run.stage))
    lines.push(`${live.run.stage.padEnd(10)} running`);
  return lines;
}

function describeRetrain(retrain: RetrainSummary): string {
  const r = retrain.result;
  const miou = r?.miou1 === null || r?.miou1 === undefined ? 'n/a' : r.miou1.toFixed(3);
  return (
    `  retrain  ${retrain.workflowId}: ` +
    (r
      ? `v${r.version}, 1-click mIoU ${miou}; ${r.reason}${thresholds(r.amgCalibration)}`
      : `${retrain.error ?? 'running'}`)
  );
}

/** A promoted version's calibrated AMG thresholds, as stage 3 uses them with `thresholds: model`. */
function thresholds(c: RetrainResult['amgCalibration']): string {
  if (c === undefined) return '';
  if (c === null) return '; no AMG thresholds (no pair kept a correct mask on the held-out images)';
  const kept = c.inheritedFrom
    ? ` (${c.inheritedFrom}'s: no pair kept a correct mask on the held-out images)`
    : '';
  return `; AMG thresholds ${c.predIouThresh} / ${c.stabilityScoreThresh}${kept}`;
}

function describeDetectorRetrain(retrain: DetectorRetrainSummary): string {
  const r = retrain.result;
  return (
    `  detector ${retrain.workflowId}: ` +
    (r
      ? `v${r.version} box AP ${r.AP.toFixed(3)}, AP50 ${r.AP50.toFixed(3)}, AR@100 ${r.AR100.toFixed(3)}; ${r.reason}`
      : `${retrain.error ?? 'running'}`)
  );
}

/** The round running now: a bar of its tasks done, and its figures so far. */
function describeLiveRound(workflowId: string | undefined, round: RoundStatus): string {
  const lines =
    `  ${bar(round.closed ?? 0, round.images)} ${workflowId ?? 'round'}: ${round.phase}, ` +
    `${round.closed ?? 0}/${round.images} tasks done, ${round.open ?? 0} open, ${round.masks ?? 0} masks` +
    (round.targetMasks === null ? '' : ` (target ${round.targetMasks})`) +
    `, closes by ${new Date(round.closesAt).toISOString()}`;
  return round.model ? `${lines}\n  models   ${describeModels(round.model, round.prefill)}` : lines;
}

const BAR_SIZE = 20;
const BAR_OPTIONS = {
  barsize: BAR_SIZE,
  barCompleteString: '\u2588'.repeat(BAR_SIZE),
  barIncompleteString: '\u2591'.repeat(BAR_SIZE),
  barGlue: '',
};

/** A text bar of `done` out of `total`, drawn as the progress bars of `sa-engine run` are. */
function bar(done: number, total: number): string {
  return cliProgress.Format.BarFormat(total > 0 ? Math.min(1, done / total) : 0, BAR_OPTIONS);
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

export function describeStage3(p: Stage3Progress): string {
  return `${p.imagesDone + p.imagesFailed}/${p.images} images (${p.imagesFailed} failed), ${p.masks} masks, shards ${p.shardsDone}/${p.shards}`;
}
