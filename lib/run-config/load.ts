// Loading a run config: parse, validate, fill in defaults and resolve relative paths, or throw one
// RunConfigError that lists every problem with its field path and position.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { dottedPath, fallbackMessage, RunConfigError, RunConfigReadError, toRawIssues } from './issues.ts';
import { detectFormat, parseText, type RunConfigFormat } from './parse.ts';
import { createRunConfigSchema, type RunConfig } from './schema.ts';

export interface LoadRunConfigOptions {
  /** Folder for relative paths; default: the folder of `fileNameForErrors`. */
  baseDir?: string;
  /** Default: from the file extension (.yaml, .yml, .json), else sniffed from the text. */
  format?: RunConfigFormat;
}

/**
 * Parses and validates a run config. Returns it with defaults filled in and locations made absolute,
 * or throws a `RunConfigError` listing every problem with its field path.
 */
export function loadRunConfig(
  text: string,
  fileNameForErrors: string,
  options: LoadRunConfigOptions = {},
): RunConfig {
  const source = text.replace(/^\uFEFF/, '');
  const parsed = parseText(
    source,
    fileNameForErrors,
    options.format ?? detectFormat(fileNameForErrors, source),
  );
  if (parsed.value === null || parsed.value === undefined) {
    throw new RunConfigError(fileNameForErrors, [
      {
        path: '',
        message: 'the file is empty; expected a run config with at least run, images, output and models',
      },
    ]);
  }
  const baseDir = options.baseDir ?? path.dirname(path.resolve(fileNameForErrors));
  const schema = createRunConfigSchema({ baseDir });
  const result = schema.safeParse(parsed.value, { reportInput: true, error: fallbackMessage });
  if (result.success) return result.data;
  const issues = toRawIssues(result.error.issues, [], schema).map(({ at, message }) => ({
    path: dottedPath(at),
    message,
    ...parsed.locate(at),
  }));
  throw new RunConfigError(fileNameForErrors, issues);
}

/** Reads, parses and validates a run config file; relative paths in it are relative to its folder. */
export async function loadRunConfigFile(
  file: string,
  options: LoadRunConfigOptions = {},
): Promise<RunConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new RunConfigReadError(file, error);
  }
  return loadRunConfig(text, file, { baseDir: path.dirname(path.resolve(file)), ...options });
}

/** The resolved config as YAML (valid as a config file itself) or JSON. */
export function formatRunConfig(config: RunConfig, format: RunConfigFormat): string {
  if (format === 'json') return `${JSON.stringify(config, null, 2)}\n`;
  // lineWidth 0: never fold long strings (URIs) across lines.
  return stringify(config, { lineWidth: 0 });
}
