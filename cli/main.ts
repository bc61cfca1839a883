// The `sa-engine` command line. Each command lives in its own module under cli/commands/ and
// registers itself on the program; this file only assembles them.
import { Command } from 'commander';
import { registerConfigCommands } from './commands/config.ts';
import { registerDevCommands } from './commands/dev.ts';

const program = new Command()
  .name('sa-engine')
  .description('Build Segment-Anything-style segmentation datasets with a model-in-the-loop data engine.')
  .showHelpAfterError();

registerDevCommands(program);
registerConfigCommands(program);

await program.parseAsync(process.argv);
