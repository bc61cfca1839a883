// The `sa-engine` commander program with every command registered, without parsing anything:
// cli/main.ts parses the process's arguments with it, and tests parse command lines with it (the
// Helm chart's container commands, test/integration/helm-chart.test.ts) without running actions.
import { Command } from 'commander';
import { registerAnnotateCommands } from './commands/annotate.ts';
import { registerAuditCommands } from './commands/audit.ts';
import { registerConfigCommands } from './commands/config.ts';
import { registerDemoCommands } from './commands/demo.ts';
import { registerDevCommands } from './commands/dev.ts';
import { registerModelsCommands } from './commands/models.ts';
import { registerNamespaceCommands } from './commands/namespace.ts';
import { registerReportCommands } from './commands/report.ts';
import { registerRunCommands } from './commands/run.ts';
import { registerSegmentCommands } from './commands/segment.ts';
import { registerSynthCommands } from './commands/synth.ts';
import { registerWorkerCommands } from './commands/worker.ts';

export function buildProgram(): Command {
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
  registerNamespaceCommands(program);
  registerConfigCommands(program);
  registerSynthCommands(program);
  return program;
}
