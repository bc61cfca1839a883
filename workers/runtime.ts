// One Temporal runtime per process, installed before the first worker: workers log every state
// change at INFO, which buries a CLI's own output, so the CLI keeps warnings unless SAE_DEBUG is set.
import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

export function installQuietRuntime(): void {
  if (installed) return;
  installed = true;
  try {
    Runtime.install({ logger: new DefaultLogger(process.env.SAE_DEBUG ? 'INFO' : 'WARN') });
  } catch {
    // A runtime already exists in this process (e.g. a test suite installed one): keep it.
  }
}
