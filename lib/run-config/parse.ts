// Parsing a run config's YAML or JSON text, keeping the positions that messages point at.
import path from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document } from 'yaml';
import { RunConfigError } from './issues.ts';

export type RunConfigFormat = 'yaml' | 'json';

export interface ParsedText {
  value: unknown;
  /** Line and column of the field at a path, or of its closest existing parent. */
  locate: (at: readonly PropertyKey[]) => { line: number; column: number } | undefined;
}

export function detectFormat(fileName: string, text: string): RunConfigFormat {
  const ext = path.extname(fileName).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  return text.trimStart().startsWith('{') ? 'json' : 'yaml';
}

export function parseText(text: string, fileName: string, format: RunConfigFormat): ParsedText {
  const lineCounter = new LineCounter();
  // `merge: true` lets users share settings with YAML anchors and `<<: *defaults`.
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: true });
  const locate = (at: readonly PropertyKey[]) => locateInDocument(doc, lineCounter, at);
  if (format === 'json') return { value: parseJson(text, fileName), locate };
  if (doc.errors.length > 0) throw new RunConfigError(fileName, doc.errors.map(yamlSyntaxIssue));
  return { value: doc.toJS(), locate };
}

/** JSON.parse, so JSON keeps JSON's rules; the YAML document above only supplies positions. */
function parseJson(text: string, fileName: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const offset = /at position (\d+)/.exec(message);
    const position = offset ? positionOfOffset(text, Number(offset[1])) : {};
    throw new RunConfigError(fileName, [{ path: '', message: `JSON syntax error: ${message}`, ...position }]);
  }
}

function positionOfOffset(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}

function yamlSyntaxIssue(error: {
  message: string;
  linePos?: [{ line: number; col: number }, ...unknown[]];
}) {
  // The yaml library appends " at line L, column C:" and a code frame; we report the position apart.
  const message = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
  const at = error.linePos?.[0];
  return {
    path: '',
    message: `YAML syntax error: ${message}`,
    ...(at ? { line: at.line, column: at.col } : {}),
  };
}

function locateInDocument(doc: Document, lineCounter: LineCounter, at: readonly PropertyKey[]) {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  let found = 0;
  for (const segment of at) {
    if (isMap(node)) {
      const pair = node.items.find(
        (item) => isScalar(item.key) && String(item.key.value) === String(segment),
      );
      if (!pair) break;
      offset = rangeStart(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      node = node.items[segment];
      offset = rangeStart(node) ?? offset;
    } else {
      break;
    }
    found++;
  }
  // Whole-file problems and missing top-level keys have no better place than "line 1", which
  // only distracts.
  if (offset === undefined || found === 0) return undefined;
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range?.[0];
}
