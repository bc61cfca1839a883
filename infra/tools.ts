// Where the dev-stack binaries live. infra/install-tools.sh builds them from the pinned versions
// in infra/tools.json into a cache outside the clone (buildTools runs it when the CLI finds one
// missing); environment variables can point elsewhere.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export type ToolName = 'temporal' | 'versitygw' | 'helm';

/** The dev stack's servers: the ones the CLI builds on first use (helm only `npm run setup` builds). */
const DEV_STACK_TOOLS: ToolName[] = ['temporal', 'versitygw'];

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
  helm: 'SAE_HELM_BIN',
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

function toolLocation(tool: ToolName): string {
  return process.env[overrideEnv[tool]] ?? join(cacheDir(), 'tools', `${tool}-${pins[tool].version}`, tool);
}

/** Absolute path of an installed tool; throws ToolMissingError with the fix when absent. */
export function toolPath(tool: ToolName): string {
  const path = toolLocation(tool);
  if (!existsSync(path)) throw new ToolMissingError(tool, path);
  return path;
}

/**
 * The dev stack's servers absent from the cache; one an override variable names is the user's to
 * provide, never built.
 */
export function missingTools(): ToolName[] {
  return DEV_STACK_TOOLS.filter(
    (tool) => process.env[overrideEnv[tool]] === undefined && !existsSync(toolLocation(tool)),
  );
}

/** Where install-tools.sh's and Go's output goes, so a failed build can be read in full. */
export function installLogPath(): string {
  return join(cacheDir(), 'tools', 'install.log');
}

/**
 * Runs infra/install-tools.sh for `tools`, output to installLogPath(); `onBuilding` hears each tool
 * as Go starts on it. Resolves with the script's exit code.
 */
export async function buildTools(
  tools: ToolName[],
  onBuilding: (tool: ToolName, version: string) => void,
): Promise<number> {
  mkdirSync(dirname(installLogPath()), { recursive: true });
  const log = createWriteStream(installLogPath()); // this run's output only: its tail says why it failed
  const script = fileURLToPath(new URL('./install-tools.sh', import.meta.url));
  const child = spawn('bash', [script, ...tools], { stdio: ['ignore', 'pipe', 'pipe'] });
  const closed = once(child, 'close'); // listening from the start: it may come before stdout is read
  child.stderr.pipe(log, { end: false });
  for await (const line of createInterface({ input: child.stdout })) {
    log.write(line + '\n');
    const building = /^install-tools: building (\S+) (\S+)/.exec(line);
    if (building) onBuilding(building[1] as ToolName, building[2]!);
  }
  const [code] = (await closed) as [number | null];
  await new Promise((done) => log.end(done));
  return code ?? 1;
}
