// The record `sa-engine dev up` leaves in .sa-engine/dev.json: endpoints for every other command
// and the exact processes it started, so `dev down` stops those and nothing else.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import type { ManagedProcess } from './dev-stack.ts';
import type { StackInfo } from './stack-info.ts';

export interface DevState {
  startedAt: string;
  stateDir: string;
  info: StackInfo;
  processes: ManagedProcess[];
}

const devStateSchema = z.object({
  startedAt: z.string(),
  stateDir: z.string(),
  info: z.object({
    temporal: z.object({ address: z.string(), namespace: z.string(), uiUrl: z.string() }),
    s3: z.object({
      endpoint: z.string(),
      region: z.string(),
      bucket: z.string(),
      accessKeyId: z.string(),
      secretAccessKey: z.string(),
    }),
  }),
  processes: z.array(
    z.object({ name: z.string(), pid: z.number().int(), command: z.string(), logFile: z.string() }),
  ),
});

/** `.sa-engine/` in the working directory unless SAE_STATE_DIR says otherwise. */
export function defaultStateDir(): string {
  return resolve(process.env.SAE_STATE_DIR ?? '.sa-engine');
}

function devStateFile(stateDir: string): string {
  return join(stateDir, 'dev.json');
}

export function readDevState(stateDir = defaultStateDir()): DevState | undefined {
  const file = devStateFile(stateDir);
  if (!existsSync(file)) return undefined;
  const parsed = devStateSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success)
    throw new Error(`${file} is not a dev-stack record (${parsed.error.issues[0]?.message}); remove it`);
  return parsed.data;
}

export function writeDevState(state: DevState): void {
  mkdirSync(state.stateDir, { recursive: true });
  writeFileSync(devStateFile(state.stateDir), JSON.stringify(state, null, 2) + '\n');
}

export function removeDevState(stateDir = defaultStateDir()): void {
  rmSync(devStateFile(stateDir), { force: true });
}

/** True when `pid` still runs `command`: a pid reused by another program is never signalled. */
export function runsCommand(pid: number, command: string): boolean {
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
    return argv0 === command;
  } catch {
    return false;
  }
}
