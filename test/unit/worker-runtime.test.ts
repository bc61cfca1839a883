import { describe, expect, it } from 'vitest';
import type { LogEntry } from '@temporalio/worker';
import { CliLogger } from '../../workers/runtime.ts';

describe('the CLI workers logger', () => {
  function capture() {
    const entries: LogEntry[] = [];
    return { entries, logger: new CliLogger('WARN', (entry) => entries.push(entry)) };
  }

  it("drops the SDK's warning that an activity-only pool polls no workflow tasks", () => {
    const { entries, logger } = capture();
    logger.warn('No workflows registered, not polling for workflow tasks', {
      taskQueue: 'sae-gpu-inference',
    });
    expect(entries).toEqual([]);
  });

  it('keeps every other warning and error, and the level filter', () => {
    const { entries, logger } = capture();
    logger.warn('Worker failed to poll', { attempt: 2 });
    logger.error('Activity failed');
    logger.info('Worker state changed');
    expect(entries.map((e) => [e.level, e.message])).toEqual([
      ['WARN', 'Worker failed to poll'],
      ['ERROR', 'Activity failed'],
    ]);
  });
});
