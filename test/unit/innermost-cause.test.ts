import { ApplicationFailure, ChildWorkflowFailure, RetryState } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { innermostCause, innermostMessage } from '../../lib/innermost-cause.ts';

describe('innermostCause', () => {
  it('goes down a workflow → child → application failure chain to what the code threw', () => {
    const thrown = ApplicationFailure.nonRetryable('model.json is missing', 'ModelPackageError');
    const chain = new ChildWorkflowFailure(
      'default',
      { workflowId: 'run/stage3' },
      'automaticStage',
      RetryState.NON_RETRYABLE_FAILURE,
      thrown,
    );
    expect(innermostCause(chain)).toBe(thrown);
    expect(innermostMessage(chain)).toBe('model.json is missing');
  });

  it('stops at a cause that is not an Error, and says what a non-Error is', () => {
    const err = new Error('outer', { cause: 'a string' });
    expect(innermostCause(err)).toBe(err);
    expect(innermostMessage(err)).toBe('outer');
    expect(innermostMessage('plain')).toBe('plain');
  });
});
