// `sa-engine config validate FILE [--json]`: check a run config before launching a run.
// On success it prints the resolved config (defaults filled in, paths absolute) on stdout, which is
// itself a valid config file; on failure it lists every problem with its field path on stderr.
import type { Command } from 'commander';
import {
  RunConfigError,
  RunConfigReadError,
  formatRunConfig,
  formatRunConfigIssue,
  loadRunConfigFile,
} from '../../lib/run-config.ts';

/** Exit codes: 0 valid, 1 invalid config, 2 file not readable. */
const EXIT_INVALID = 1;
const EXIT_UNREADABLE = 2;

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('Work with run config files.');
  config
    .command('validate')
    .description(
      'Validate a run config (YAML or JSON). Prints the resolved config, or every error with its field path.',
    )
    .argument('<file>', 'the run config file')
    .option('--json', 'print the resolved config (or the errors) as JSON')
    .action(async (file: string, options: { json?: boolean }) => {
      process.exitCode = await validate(file, options.json === true);
    });
}

async function validate(file: string, json: boolean): Promise<number> {
  try {
    const config = await loadRunConfigFile(file);
    if (!json) process.stdout.write(`# ${file} is valid. Resolved config, every default filled in:\n`);
    process.stdout.write(formatRunConfig(config, json ? 'json' : 'yaml'));
    return 0;
  } catch (error) {
    if (error instanceof RunConfigError) return reportInvalid(error, json);
    if (error instanceof RunConfigReadError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT_UNREADABLE;
    }
    throw error;
  }
}

function reportInvalid(error: RunConfigError, json: boolean): number {
  const count = error.issues.length === 1 ? '1 problem' : `${error.issues.length} problems`;
  const lines = error.issues.map((issue) => `  ${formatRunConfigIssue(issue)}`);
  process.stderr.write([`${error.fileName}: ${count}:`, ...lines, ''].join('\n'));
  // With --json, stdout stays machine-readable either way.
  if (json)
    process.stdout.write(`${JSON.stringify({ file: error.fileName, issues: error.issues }, null, 2)}\n`);
  return EXIT_INVALID;
}
