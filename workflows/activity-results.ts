// What the training workflows do with what an activity returned or threw: results from the other
// side of the contract (Python) are parsed, and a failure's type is read off its cause.
import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { z } from 'zod';

/** A result the other side of the contract sent, parsed; one that does not match fails the workflow. */
export function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw ApplicationFailure.nonRetryable(
    `${what} returned what the contract does not allow: ${parsed.error.message}`,
    'ContractError',
  );
}

/** An activity failure whose cause is an application error of this type (e.g. AliasConflictError). */
export function isActivityError(
  err: unknown,
  type: string,
): err is ActivityFailure & { cause: ApplicationFailure } {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === type;
}
