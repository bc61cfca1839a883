// The runs of a workflow that continues as new, as integration tests inspect them.
import type { Client } from '@temporalio/client';

/** Run ids of every execution with this workflow id (each continue-as-new is one). */
export async function executionsOf(client: Client, workflowId: string): Promise<string[]> {
  const runIds: string[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` }))
    runIds.push(wf.runId);
  return runIds;
}

/** The cursor a continued run started with: its input's `cursor` (none for the first run). */
export async function cursorOf<Cursor>(
  client: Client,
  workflowId: string,
  runId: string,
): Promise<Cursor | undefined> {
  const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
  const payload = history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const input = JSON.parse(Buffer.from(payload!.data!).toString('utf8')) as { cursor?: Cursor };
  return input.cursor;
}
