// The run config's errors, and zod's issues turned into them: one per unknown key (with a
// suggested spelling), the closest branch of a failed union, every path written out dotted.
import { z } from 'zod';
import { expectedGot, quoteHint } from './messages.ts';

export interface RunConfigIssue {
  /** Dotted field path such as `stage3.predIouThresh` or `images.extensions[2]`; '' for the file. */
  path: string;
  /** What was expected, and what was found when that helps. */
  message: string;
  /** 1-based position in the file, when known. */
  line?: number;
  column?: number;
}

/** One line per issue: `stage3.predIouThresh: expected ... (line 12, column 3)`. */
export function formatRunConfigIssue(issue: RunConfigIssue): string {
  const where = issue.line === undefined ? '' : ` (line ${issue.line}, column ${issue.column ?? 1})`;
  return `${issue.path ? `${issue.path}: ` : ''}${issue.message}${where}`;
}

/** The file parsed but is not a valid run config; `issues` lists every problem found. */
export class RunConfigError extends Error {
  override readonly name = 'RunConfigError';
  readonly fileName: string;
  readonly issues: readonly RunConfigIssue[];

  constructor(fileName: string, issues: readonly RunConfigIssue[]) {
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    const lines = issues.map((issue) => `  ${formatRunConfigIssue(issue)}`);
    super([`${fileName}: ${count} in the run config:`, ...lines].join('\n'));
    this.fileName = fileName;
    this.issues = issues;
  }
}

/** The config file could not be read at all (missing, unreadable, a folder). */
export class RunConfigReadError extends Error {
  override readonly name = 'RunConfigReadError';
  readonly fileName: string;

  constructor(fileName: string, cause: unknown) {
    super(`cannot read run config ${fileName}: ${(cause as Error).message ?? String(cause)}`, { cause });
    this.fileName = fileName;
  }
}

/** `['images', 'extensions', 2]` -> `images.extensions[2]`. */
export function dottedPath(segments: readonly PropertyKey[]): string {
  return segments
    .map((segment, i) =>
      typeof segment === 'number' ? `[${segment}]` : i === 0 ? String(segment) : `.${String(segment)}`,
    )
    .join('');
}

// Zod's own messages for issues that no field above words itself ("Invalid input: ...").
const TYPE_NOUNS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping (key: value lines)',
  array: 'a list',
};

export function fallbackMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_type') {
    return expectedGot(TYPE_NOUNS[issue.expected] ?? issue.expected, issue.input, quoteHint(issue));
  }
  if (issue.code === 'invalid_value') {
    return expectedGot(`one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`, issue.input);
  }
  return undefined;
}

/** An issue before its path is written out and located in the file. */
export interface RawIssue {
  at: PropertyKey[];
  message: string;
}

/** Zod issues -> ours: one per unknown key, and the closest branch of a failed union. */
export function toRawIssues(
  issues: readonly z.core.$ZodIssue[],
  prefix: readonly PropertyKey[],
  schema: z.core.$ZodType,
): RawIssue[] {
  return issues.flatMap((issue): RawIssue[] => {
    const at = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const known = objectKeysAt(schema, at);
      return issue.keys.map((key) => ({ at: [...at, key], message: unknownKeyMessage(key, known) }));
    }
    if (issue.code === 'invalid_union') {
      const branch = closestBranch(issue.errors);
      if (branch) return toRawIssues(branch, at, schema);
    }
    return [{ at, message: issue.message }];
  });
}

/**
 * A union fails as a whole; report the branch the user most likely meant. A branch that calls one
 * of the user's keys unknown is not it (`{ manifest: ... }` is not a `prefix` config); among the
 * rest, the one with the fewest problems. When that leaves no single branch, the union's own
 * message ("either ... or ...") is clearer.
 */
function closestBranch(
  branches: readonly (readonly z.core.$ZodIssue[])[],
): readonly z.core.$ZodIssue[] | undefined {
  const fitting = branches.filter(
    (issues) => !issues.some((i) => i.code === 'unrecognized_keys' && i.path.length === 0),
  );
  const fewest = Math.min(...fitting.map((issues) => issues.length));
  const best = fitting.filter((issues) => issues.length === fewest);
  return best.length === 1 ? best[0] : undefined;
}

const CREDENTIAL_KEY = /secret|password|credential|access_?key|session_?token|^token$/i;

function unknownKeyMessage(key: string, known: readonly string[]): string {
  if (CREDENTIAL_KEY.test(key)) {
    return (
      'credentials never go in the run config; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ' +
      'AWS_PROFILE, or use the standard AWS credential chain'
    );
  }
  const guess = closestKey(key, known);
  if (guess) return `unknown key (did you mean "${guess}"?)`;
  return known.length > 0 ? `unknown key; expected one of: ${known.join(', ')}` : 'unknown key';
}

/** A known key that `key` is probably a typo of: same letters ignoring case and `_`, or 1-2 edits. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const sameWord = known.find((candidate) => squash(candidate) === squash(key));
  if (sameWord) return sameWord;
  const scored = known.map((candidate) => ({
    candidate,
    distance: editDistance(squash(key), squash(candidate)),
  }));
  const best = scored.sort((a, b) => a.distance - b.distance)[0];
  return best && best.distance <= Math.min(2, Math.floor(key.length / 3)) ? best.candidate : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The keys an object schema at `at` accepts (all branches of a union), to suggest spellings. */
function objectKeysAt(schema: z.core.$ZodType, at: readonly PropertyKey[]): string[] {
  return [...new Set(objectSchemasAt(schema, at).flatMap((object) => Object.keys(object.shape)))];
}

function objectSchemasAt(schema: z.core.$ZodType, at: readonly PropertyKey[]): z.ZodObject[] {
  if (
    schema instanceof z.ZodOptional ||
    schema instanceof z.ZodNullable ||
    schema instanceof z.ZodDefault ||
    schema instanceof z.ZodPrefault
  ) {
    return objectSchemasAt(schema.unwrap(), at);
  }
  if (schema instanceof z.ZodPipe)
    return [...objectSchemasAt(schema.in, at), ...objectSchemasAt(schema.out, at)];
  if (schema instanceof z.ZodUnion) return schema.options.flatMap((option) => objectSchemasAt(option, at));
  const [head, ...rest] = at;
  if (schema instanceof z.ZodObject) {
    if (head === undefined) return [schema];
    const child = schema.shape[String(head)];
    return child ? objectSchemasAt(child, rest) : [];
  }
  if (schema instanceof z.ZodArray && typeof head === 'number') return objectSchemasAt(schema.element, rest);
  return [];
}
