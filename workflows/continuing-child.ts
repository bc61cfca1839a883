// A child workflow that may continue as new, run so that cancelling the parent reaches it.
//
// Temporal sends a parent's cancel to the run of the child that the parent started
// (temporalio/features#503). Once that child has continued as new, that run is closed: the cancel
// is accepted and lost, the child's current run goes on, and the parent waits for it forever.
// So on cancel the parent also asks the child by workflow id alone, which reaches its current run.
import type { WithWorkflowArgs, Workflow, WorkflowResultType } from '@temporalio/common';
import {
  CancellationScope,
  executeChild,
  getExternalWorkflowHandle,
  patched,
  type ChildWorkflowOptions,
} from '@temporalio/workflow';

/** executeChild's options for a workflow function (the SDK does not export the type). */
type ChildOptions<T extends Workflow> = WithWorkflowArgs<
  T,
  Omit<ChildWorkflowOptions, 'typeInfo'> & { typeInfo?: undefined }
> & {
  workflowId: string;
};

/** Runs recorded before this cancel only the child's first run. */
const CANCEL_CONTINUED_CHILD_BY_ID = 'cancel-continued-child-by-id';

export async function executeContinuingChild<T extends Workflow>(
  workflow: T,
  options: ChildOptions<T>,
): Promise<WorkflowResultType<T>> {
  if (!patched(CANCEL_CONTINUED_CHILD_BY_ID)) return executeChild(workflow, options);
  let running = true;
  CancellationScope.current().cancelRequested.catch(() => {
    // Outside the cancelled scope, or the request itself would be cancelled before it is sent.
    if (running) void CancellationScope.nonCancellable(() => cancelByWorkflowId([options.workflowId]));
  });
  try {
    return await executeChild(workflow, options);
  } finally {
    running = false;
  }
}

/**
 * Asks the current run of each workflow to cancel. A workflow that has closed meanwhile has
 * nothing left to cancel, so a refusal is not an error.
 */
export async function cancelByWorkflowId(workflowIds: readonly string[]): Promise<void> {
  await Promise.all(
    workflowIds.map((id) =>
      getExternalWorkflowHandle(id)
        .cancel()
        .catch(() => undefined),
    ),
  );
}
