// Progress bars for a following `sa-engine run` (cli-progress); plain lines when not on a terminal.
import cliProgress from 'cli-progress';
import type { DatasetRunResult } from '../workflows/dataset-run.ts';
import type { RunSnapshot, RunWatcher } from '../client/runs.ts';
import type { RoundStatus } from '../workflows/stage1-round.ts';

export class ProgressView implements RunWatcher {
  private readonly tty = process.stdout.isTTY === true;
  private readonly bars = new cliProgress.MultiBar(
    { format: ' {name} |{bar}| {value}/{total} {detail}', hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.shades_classic,
  );
  private images?: cliProgress.SingleBar;
  private shards?: cliProgress.SingleBar;
  private tasks?: cliProgress.SingleBar;
  private lastLine = '';

  update(snapshot: RunSnapshot): void {
    const s3 = snapshot.stage3;
    if (!this.tty) return this.printLine(snapshot);
    if (snapshot.round) this.updateRound(snapshot.round);
    if (!s3) return;
    this.images ??= this.bars.create(s3.images, 0, { name: 'images', detail: '' });
    this.shards ??= this.bars.create(s3.shards, 0, { name: 'shards', detail: '' });
    this.images.setTotal(s3.images);
    this.images.update(s3.imagesDone + s3.imagesFailed, {
      detail: `${s3.masks} masks, ${s3.imagesFailed} failed`,
    });
    this.shards.setTotal(s3.shards);
    this.shards.update(s3.shardsDone, { detail: `${s3.running} running` });
  }

  /** Stage 1: tasks done of those published, and masks so far. */
  private updateRound(round: RoundStatus): void {
    this.tasks ??= this.bars.create(round.images, 0, { name: 'tasks ', detail: '' });
    this.tasks.setTotal(round.images);
    this.tasks.update(round.closed ?? 0, {
      detail: `${round.masks ?? 0} masks${prefilled(round)}, ${round.published} published, ${round.phase}`,
    });
  }

  finish(result: DatasetRunResult): void {
    if (!this.tty || !result.stage3) return;
    this.images?.update(result.stage3.imagesDone + result.stage3.imagesFailed);
    this.shards?.update(result.stage3.shardsDone);
  }

  stop(): void {
    if (this.tty) this.bars.stop();
  }

  private printLine(snapshot: RunSnapshot): void {
    const { stage3: s3, round, run } = snapshot;
    const roundId = run.stage === 'stage2' ? run.stage2WorkflowId : run.stage1WorkflowId;
    const line = s3
      ? `[${snapshot.run.stage}] images ${s3.imagesDone + s3.imagesFailed}/${s3.images} (${s3.imagesFailed} failed), ${s3.masks} masks, shards ${s3.shardsDone}/${s3.shards}`
      : round
        ? `[${run.stage}] ${roundId}: ${round.phase}, tasks ${round.closed ?? 0}/${round.published} done, ${round.masks ?? 0} masks${prefilled(round)}`
        : `[${snapshot.run.stage}]`;
    if (line !== this.lastLine) console.log(line);
    this.lastLine = line;
  }
}

/** Stage 2: ", 12 pre-filled by detector@v1" (pre-filled masks join the count when a task closes). */
function prefilled(round: RoundStatus): string {
  return round.prefill
    ? `, ${round.prefill.masks} pre-filled by ${round.prefill.detector ?? 'no detector'}`
    : '';
}
