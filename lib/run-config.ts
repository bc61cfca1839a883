// The run config: one YAML or JSON file that describes a dataset run (DESIGN.md "Run config").
//
// - `createRunConfigSchema()` / `RunConfigSchema`: the zod schema. Every object is strict, so a
//   misspelled key is an error instead of a silently ignored setting, and every setting has the
//   paper's or the official SAM default, so a config only names what it changes.
// - `loadRunConfig(text, fileName)` / `loadRunConfigFile(path)`: parse YAML or JSON, validate, fill in
//   defaults and resolve relative paths, or throw one `RunConfigError` that lists every problem.
//
// Workflow code must only `import type` from this module: it uses node:fs, node:path and yaml,
// which the Temporal workflow sandbox does not allow.
//
// The parts: run-config/schema.ts (the sections), run-config/load.ts (reading files),
// run-config/parse.ts (YAML and JSON with positions), run-config/issues.ts (errors and messages).
export * from './run-config/schema.ts';
export {
  formatRunConfigIssue,
  RunConfigError,
  RunConfigReadError,
  type RunConfigIssue,
} from './run-config/issues.ts';
export type { RunConfigFormat } from './run-config/parse.ts';
export * from './run-config/load.ts';
