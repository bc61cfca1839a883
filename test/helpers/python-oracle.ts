// The project's Python and the oracle scripts under test/python/ that tests check lib/ against.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');

/** $SAE_PYTHON, else the venv that infra/install-python.sh links as trainer/.venv. */
export const projectPython = process.env.SAE_PYTHON ?? resolve(ROOT, 'trainer/.venv/bin/python');

/** Throws a set-up message when there is no Python; `needs` names what its venv must contain. */
export function requireProjectPython(needs: string): void {
  if (!existsSync(projectPython)) {
    throw new Error(
      `no Python at ${projectPython}: run infra/install-python.sh (trainer/.venv with ${needs}) or set SAE_PYTHON`,
    );
  }
}

/** Runs test/python/<script> with the request as JSON on stdin and parses its JSON answer. */
export function askOracle<T>(script: string, request: unknown): T {
  const stdout = execFileSync(projectPython, [resolve(ROOT, 'test/python', script)], {
    input: JSON.stringify(request),
    maxBuffer: 1 << 30,
    encoding: 'utf8',
  });
  return JSON.parse(stdout) as T;
}
