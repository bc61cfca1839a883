// Where the dev-stack binaries live. infra/install-tools.sh builds them from the pinned versions
// in infra/tools.json into a cache outside the clone; environment variables can point elsewhere.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type ToolName = 'temporal' | 'versitygw';

interface ToolPin {
  module: string;
  version: string;
}

const pins = JSON.parse(readFileSync(new URL('./tools.json', import.meta.url), 'utf8')) as Record<
  ToolName,
  ToolPin
>;

const overrideEnv: Record<ToolName, string> = {
  temporal: 'SAE_TEMPORAL_BIN',
  versitygw: 'SAE_S3_SERVER_BIN',
};

export function cacheDir(): string {
  return process.env.SAE_CACHE_DIR ?? join(homedir(), '.cache', 'sa-engine');
}

export function toolVersion(tool: ToolName): string {
  return pins[tool].version;
}

export class ToolMissingError extends Error {
  constructor(tool: ToolName, path: string) {
    super(
      `${tool} ${pins[tool].version} is not installed (looked for ${path}). ` +
        `Run \`bash infra/install-tools.sh\` (needs Go), or set ${overrideEnv[tool]} to an existing binary.`,
    );
    this.name = 'ToolMissingError';
  }
}

/** Absolute path of an installed tool; throws ToolMissingError with the fix when absent. */
export function toolPath(tool: ToolName): string {
  const path =
    process.env[overrideEnv[tool]] ?? join(cacheDir(), 'tools', `${tool}-${pins[tool].version}`, tool);
  if (!existsSync(path)) throw new ToolMissingError(tool, path);
  return path;
}
