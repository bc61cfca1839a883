// Messages of the run config's validation. Every message reads "expected <what>, got <found>", so
// a newcomer sees both at once.

/** The part of a zod issue that messages use. */
export type IssueInput = { input?: unknown; code?: string; expected?: string };

/** How a value found in the file is shown in a message. */
export function show(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

export function expectedGot(what: string, input: unknown, hint = ''): string {
  if (input === undefined) return `required: expected ${what}`;
  return `expected ${what}, got ${show(input)}${hint}`;
}

/** A zod `error` option: the same "expected ..., got ..." message for every way a field can fail. */
export function expecting(what: string) {
  return { error: (issue: IssueInput) => expectedGot(what, issue.input, quoteHint(issue)) };
}

/** YAML reads `run: 2024` or `region: 1` as numbers; say how to make them text. */
export function quoteHint(issue: IssueInput): string {
  const textExpected = issue.code === 'invalid_type' && issue.expected === 'string';
  return textExpected && typeof issue.input !== 'string' && typeof issue.input !== 'object'
    ? ' (quote it)'
    : '';
}
