// Replays recorded workflow histories against the current workflow code. A run that is in flight
// while workers are upgraded is replayed by the new code; any change to the commands a workflow
// issues (an added sleep, a reordered activity, a renamed child) fails here with a
// DeterminismViolationError instead of breaking those runs. Re-record the histories only when a
// change is meant to be incompatible (and versioned with patched()): scripts/record-histories.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { History } from '@temporalio/common/lib/proto-utils.js';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import * as workflows from '../../workflows/index.ts';
import { workflowBundle } from '../helpers/stage3-fixture.ts';

const HISTORIES_DIR = resolve(import.meta.dirname, '../fixtures/histories');

interface RecordedHistory {
  file: string;
  workflowType: string;
  workflowId: string;
  history: History;
}

/** Written by `JSON.stringify(history)` (protobufjs' JSON form), so read back with fromObject. */
function loadHistory(file: string): RecordedHistory {
  const json: unknown = JSON.parse(readFileSync(join(HISTORIES_DIR, file), 'utf8'));
  const history = proto.temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
  const started = history.events[0]?.workflowExecutionStartedEventAttributes;
  if (!started?.workflowType?.name) throw new Error(`${file}: does not start with WorkflowExecutionStarted`);
  return {
    file,
    workflowType: started.workflowType.name,
    // Our workflows do not read their own id, but replay under the recorded one all the same.
    workflowId: started.workflowId || file,
    history,
  };
}

const recorded = readdirSync(HISTORIES_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map(loadHistory);

describe('recorded workflow histories replay against the current workflow code', () => {
  it('covers every workflow the workers serve, including a stage that continued as new', () => {
    expect(new Set(recorded.map((r) => r.workflowType))).toEqual(new Set(Object.keys(workflows)));
    const lastEvents = recorded.map((r) => r.history.events?.at(-1));
    expect(lastEvents.some((e) => e?.workflowExecutionContinuedAsNewEventAttributes)).toBe(true);
  });

  it('covers every way a dataset run ends: completed, failed and cancelled', () => {
    const endings = recorded
      .filter((r) => r.workflowType === 'datasetRun')
      .map((r) => r.history.events?.at(-1))
      .map((e) =>
        e?.workflowExecutionCompletedEventAttributes
          ? 'completed'
          : e?.workflowExecutionFailedEventAttributes
            ? 'failed'
            : e?.workflowExecutionCanceledEventAttributes
              ? 'cancelled'
              : 'other',
      );
    expect(new Set(endings)).toEqual(new Set(['completed', 'failed', 'cancelled']));
  });

  it('covers a dataset run of the whole engine: both annotation stages, retrains, stage 3, audit, report', () => {
    const engine = recorded.find((r) => r.file === 'dataset-run-engine.json');
    expect(engine?.workflowType).toBe('datasetRun');
    const events = engine!.history.events ?? [];
    const children = events.flatMap(
      (e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId ?? [],
    );
    const activities = events.flatMap(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? [],
    );
    for (const suffix of [
      '/stage1/round-1',
      '/retrain-1',
      '/detector-retrain-1',
      '/stage2/round-2',
      '/stage3',
      '/audit',
    ])
      expect(
        children.some((id) => id.endsWith(suffix)),
        suffix,
      ).toBe(true);
    expect(activities).toContain('writeEngineReport');
    expect(events.at(-1)?.workflowExecutionCompletedEventAttributes).toBeTruthy();
  });

  it('replays every history without a determinism violation', async () => {
    const results = Worker.runReplayHistories(
      { workflowBundle: await workflowBundle(), replayName: 'sa-engine-replay-test' },
      recorded.map(({ workflowId, history }) => ({ workflowId, history })),
    );
    const failures: string[] = [];
    let replayed = 0;
    for await (const result of results) {
      replayed += 1;
      if (result.error) {
        const file = recorded.find((r) => r.workflowId === result.workflowId)?.file ?? result.workflowId;
        failures.push(`${file}: ${result.error.name}: ${result.error.message}`);
      }
    }
    expect(failures).toEqual([]);
    expect(replayed).toBe(recorded.length);
  });
});
