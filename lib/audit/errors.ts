// The audit's kinds of failure:
// - AuditInputError: the inputs cannot be audited (no reference images match the run, a mask of
//   the wrong size, an unreadable file). The message starts with the URI of the file at fault, so
//   a log line alone says what to open. Retrying will not help.
// - AuditGateError: the audit ran and wrote its report, but the figures are below the configured
//   gate. The workflow throws it to stop a release; the message lists every failed threshold.
// - AuditSampleError: the stored sample and its matches do not belong together (a step run out
//   of order, or two audits of one run writing at once). Retrying will not help.

export class AuditInputError extends Error {
  constructor(
    /** URI of the file (or folder) at fault. */
    readonly file: string,
    problem: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${problem}`, options);
    this.name = 'AuditInputError';
  }
}

export class AuditGateError extends Error {
  constructor(
    readonly failures: readonly string[],
    /** Key of report.html, for the person who reads the error. */
    readonly reportKey: string,
  ) {
    super(`the mask quality audit failed its gate: ${failures.join('; ')} (report: ${reportKey})`);
    this.name = 'AuditGateError';
  }
}

export class AuditSampleError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditSampleError';
  }
}
