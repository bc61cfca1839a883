// A stand-in for the Go toolchain, so a test can watch sa-engine build its dev tools on a "fresh
// machine" (an empty SAE_CACHE_DIR) in seconds: `go install MODULE@VERSION` puts into $GOBIN either
// a link to a binary from `binaries` (a real, runnable build) or a tiny script.
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { onTestFinished } from 'vitest';

/** A folder holding a fake `go`; put it first on PATH. Call it in a test: the folder goes when it ends. */
export function fakeGoDir(binaries: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'sae-fake-go-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const links = Object.entries(binaries)
    .map(([name, path]) => `  ${name}) ln -s '${path}' "$GOBIN/${name}"; exit ;;`)
    .join('\n');
  writeFileSync(
    join(dir, 'go'),
    `#!/usr/bin/env bash
[[ $1 == install && -n $GOBIN ]] || { echo "fake go: unexpected: $*" >&2; exit 2; }
name=\${2%@*}; name=\${name##*/}
echo "go: downloading $2" >&2
sleep 1
case $name in
${links}
esac
printf '#!/bin/sh\\necho %s built by fake go\\n' "$name" > "$GOBIN/$name" && chmod +x "$GOBIN/$name"
`,
  );
  chmodSync(join(dir, 'go'), 0o755);
  return dir;
}

/** PATH without any folder that holds a `go`: a machine where Go is not installed. */
export function pathWithoutGo(path = process.env.PATH ?? ''): string {
  return path
    .split(delimiter)
    .filter((dir) => dir && !existsSync(join(dir, 'go')))
    .join(delimiter);
}
