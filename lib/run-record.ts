// runs/<run>/run.json: a run's record in storage, the first thing a run writes and the last. It is
// created once (put-if-absent), so a second run under the same id and output is noticed even after
// Temporal's retention has forgotten the first: a completed run is never run over, and a failed or
// cancelled one is resumed only with the inputs its stage-3 plan was cut from.
import { fingerprintOf, inputDifferences, type Fingerprint } from './fingerprint.ts';
import type { ObjectStore } from './object-store.ts';
import type { RunConfig } from './run-config.ts';
import { runLayout } from './run-layout.ts';

export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled';

export interface RunRecord {
  run: string;
  status: RunStatus;
  updatedAt: string;
  /** What outputs already in storage depend on: the images and how they are cut into shards. */
  identity: Fingerprint;
  config: unknown;
  result?: unknown;
}

/** The inputs that make two runs under one id the same run: the images and the shard size. */
export function runIdentity(config: RunConfig): Fingerprint {
  return fingerprintOf({ images: config.images, shardSize: config.stage3.shardSize });
}

/** A completed run with this id is already stored under this output. */
export class RunAlreadyCompletedError extends Error {
  constructor(where: string, updatedAt: string) {
    super(
      `${where} says this run completed at ${updatedAt}; its outputs are there and are not run over. ` +
        'Give the new run another id (run:), or another output.',
    );
    this.name = 'RunAlreadyCompletedError';
  }
}

/** A run with this id but other inputs left its outputs under this output. */
export class RunIdentityMismatchError extends Error {
  constructor(where: string, ...differences: string[]) {
    super(
      `${where} belongs to a run with this id made from other inputs (${differences.join('; ')}); ` +
        'resuming it with these would mix the two. Give the new run another id (run:), or another output.',
    );
    this.name = 'RunIdentityMismatchError';
  }
}

/**
 * Writes the record. The first record of a run (status running) is created only if none exists;
 * when one does, the run goes on only as a resume of that same run: not completed, same identity.
 */
export async function writeRunRecord(out: ObjectStore, record: RunRecord): Promise<void> {
  const key = runLayout.runRecord(record.run);
  const body = JSON.stringify(record, null, 2) + '\n';
  const options = { contentType: 'application/json' };
  if (record.status === 'running') {
    if (await out.putIfAbsent(key, body, options)) return;
    checkSameRun(out.uri(key), await readRunRecord(out, record.run), record);
  }
  await out.put(key, body, options);
}

export async function readRunRecord(out: ObjectStore, runId: string): Promise<Partial<RunRecord>> {
  return JSON.parse((await out.get(runLayout.runRecord(runId))).toString('utf8')) as Partial<RunRecord>;
}

function checkSameRun(where: string, stored: Partial<RunRecord>, record: RunRecord): void {
  if (stored.status === 'completed')
    throw new RunAlreadyCompletedError(where, stored.updatedAt ?? 'an unknown time');
  if (stored.identity?.fingerprint === record.identity.fingerprint) return;
  const differences = stored.identity
    ? inputDifferences(stored.identity.inputs, record.identity.inputs)
    : ['written by an sa-engine that did not record them'];
  throw new RunIdentityMismatchError(where, ...differences);
}
