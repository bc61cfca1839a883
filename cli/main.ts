// The `sa-engine` command line. Each command lives in its own module under cli/commands/ and
// registers itself on the program (cli/program.ts); this file only parses the arguments.
import { buildProgram } from './program.ts';
import { FollowInterruptedError } from './run-in-process.ts';

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Users get the message, which says what is wrong and what to do; SAE_DEBUG=1 adds the stack.
  const error = err as Error;
  console.error(`sa-engine: ${error.message}`);
  if (process.env.SAE_DEBUG) console.error(error.stack);
  process.exitCode = error instanceof FollowInterruptedError ? error.exitCode : 1;
}
