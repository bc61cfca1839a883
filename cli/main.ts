// The `sa-engine` command line. Each command lives in its own module under cli/commands/ and
// registers itself on the program; this file only assembles them.
import { Command } from 'commander';
import { registerAnnotateCommands } from './commands/annotate.ts';
import { registerAuditCommands } from './commands/audit.ts';
import { registerConfigCommands } from './commands/config.ts';
import { registerDemoCommands } from './commands/demo.ts';
import { registerDevCommands } from './commands/dev.ts';
import { registerModelsCommands } from './commands/models.ts';
import { registerReportCommands } from './commands/report.ts';
import { registerRunCommands } from './commands/run.ts';
import { registerSegmentCommands } from './commands/segment.ts';
import { registerSynthCommands } from './commands/synth.ts';
import { registerWorkerCommands } from './commands/worker.ts';

const program = new Command()
  .name('sa-engine')
  .description('Build Segment-Anything-style segmentation datasets with a model-in-the-loop data engine.')
  .showHelpAfterError();

registerDemoCommands(program);
registerRunCommands(program);
registerSegmentCommands(program);
registerWorkerCommands(program);
registerAnnotateCommands(program);
registerAuditCommands(program);
registerReportCommands(program);
registerModelsCommands(program);
registerDevCommands(program);
registerConfigCommands(program);
registerSynthCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Users get the message, which says what is wrong and what to do; SAE_DEBUG=1 adds the stack.
  const error = err as Error;
  console.error(`sa-engine: ${error.message}`);
  if (process.env.SAE_DEBUG) console.error(error.stack);
  process.exitCode = 1;
}
