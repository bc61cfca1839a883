// One Temporal runtime per process, installed before the first worker: workers log every state
// change at INFO, which buries a CLI's own output, so the CLI keeps warnings unless SAE_DEBUG is set.
import { DefaultLogger, Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';

/**
 * Warnings the SDK prints for what our pools do by design: the inference and training pools run
 * activities only, and every `run --workers` would otherwise greet the user with this line.
 */
const BY_DESIGN = new Set(['No workflows registered, not polling for workflow tasks']);

/** The SDK's logger at a CLI's level, without the by-design warnings. */
export class CliLogger extends DefaultLogger {
  override log(level: LogLevel, message: string, meta?: LogMetadata): void {
    if (BY_DESIGN.has(message)) return;
    super.log(level, message, meta);
  }
}

let installed = false;

export function installQuietRuntime(): void {
  if (installed) return;
  installed = true;
  try {
    Runtime.install({ logger: new CliLogger(process.env.SAE_DEBUG ? 'INFO' : 'WARN') });
  } catch {
    // A runtime already exists in this process (e.g. a test suite installed one): keep it.
  }
}
