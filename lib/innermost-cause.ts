// The error at the bottom of a cause chain (workflow → child workflow → activity → the error the
// code threw): what actually went wrong, not "Child Workflow execution failed". Plain code with no
// imports, so that workflows use it too.

export function innermostCause(err: unknown): unknown {
  let inner = err;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  return inner;
}

export function innermostMessage(err: unknown): string {
  const inner = innermostCause(err);
  return inner instanceof Error ? inner.message : String(inner);
}
