// A stage-1 round's annotation tasks as Temporal's visibility sees them: one workflow per image,
// tagged `SaeRound = "<run>/round-<k>"`, with the end of its lease in `SaeLeaseUntil` (the epoch
// while nobody holds it). The round workflow counts and closes its tasks with these queries, and
// the annotation service finds free tasks with them, so neither keeps a list of 100,000 task ids.
//
// Visibility lags the workflows a little: a free task it lists may have been claimed a moment ago.
// That is harmless, the claim Update's validator refuses it and the caller tries the next.
import type { Client } from '@temporalio/client';
import { claimTaskUpdate, closeTaskSignal, roundTag, type Lease } from './task-messages.ts';

function tasksOf(runId: string, round: number): string {
  return `WorkflowType = 'annotationTask' AND SaeRound = '${roundTag(runId, round)}'`;
}

export interface RoundTaskCounts {
  open: number;
  closed: number;
}

export async function countRoundTasks(
  client: Client,
  runId: string,
  round: number,
): Promise<RoundTaskCounts> {
  const all = tasksOf(runId, round);
  const [open, total] = await Promise.all([
    client.workflow.count(`${all} AND ExecutionStatus = 'Running'`),
    client.workflow.count(all),
  ]);
  return { open: open.count, closed: total.count - open.count };
}

/** Signals every open task of the round to close; returns how many it signalled. */
export async function closeRoundTasks(
  client: Client,
  runId: string,
  round: number,
  onEach: () => void = () => {},
): Promise<number> {
  let signalled = 0;
  for await (const task of client.workflow.list({
    query: `${tasksOf(runId, round)} AND ExecutionStatus = 'Running'`,
  })) {
    await client.workflow
      .getHandle(task.workflowId)
      .signal(closeTaskSignal)
      .catch((err: unknown) => {
        // Closed since it was listed: nothing to do.
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
      });
    signalled += 1;
    onEach();
  }
  return signalled;
}

/** Ids of the run's open tasks (any round) that nobody holds now, at most `limit`. */
export async function freeTaskIds(
  client: Client,
  runId: string,
  limit: number,
  now = new Date(),
): Promise<string[]> {
  const query =
    `WorkflowType = 'annotationTask' AND ExecutionStatus = 'Running' AND SaeRun = '${runId}' ` +
    `AND SaeLeaseUntil < '${now.toISOString()}'`;
  const ids: string[] = [];
  for await (const task of client.workflow.list({ query, pageSize: limit })) {
    ids.push(task.workflowId);
    if (ids.length >= limit) break;
  }
  return ids;
}

/**
 * Claims the first of these tasks that the annotator may take; undefined when none is left.
 * Refusals (claimed a moment ago, skipped by this annotator, closed) move on to the next.
 */
export async function claimFirst(
  client: Client,
  taskIds: readonly string[],
  annotator: string,
): Promise<{ taskId: string; lease: Lease } | undefined> {
  for (const taskId of taskIds) {
    try {
      const lease = await client.workflow
        .getHandle(taskId)
        .executeUpdate(claimTaskUpdate, { args: [{ annotator }] });
      return { taskId, lease };
    } catch (err) {
      const name = (err as Error).name;
      if (name !== 'WorkflowUpdateFailedError' && name !== 'WorkflowNotFoundError') throw err;
    }
  }
  return undefined;
}
