// The retry policies of workflows/retry-policies.ts name error types that the activities really
// throw: Temporal matches nonRetryableErrorTypes against the failure's type, which the TypeScript
// SDK takes from the error's constructor name and the Python SDK from the exception's class name.
// A name that no class has is dead code that looks like protection. And every activity stub in
// workflows/ has a policy with a bounded backoff.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as calibrationSet from '../../lib/amg/calibration-set.ts';
import * as auditErrors from '../../lib/audit/errors.ts';
import * as datasetStats from '../../lib/dataset/build.ts';
import * as masksFile from '../../lib/dataset/masks-file.ts';
import * as imageIo from '../../lib/images/image-io.ts';
import * as imageSource from '../../lib/images/image-source.ts';
import * as detectorPackage from '../../lib/detector/detector-package.ts';
import * as modelRegistry from '../../lib/models/registry.ts';
import * as modelPackage from '../../lib/sam/model-package.ts';
import * as objectStoreErrors from '../../lib/object-store/errors.ts';
import * as runRecord from '../../lib/run-record.ts';
import * as shardPlan from '../../lib/stage3/shard-plan.ts';
import * as shardRunner from '../../lib/stage3/shard-runner.ts';
import * as prefillReview from '../../lib/stage2/prefill-review.ts';
import * as policies from '../../workflows/retry-policies.ts';

const REPO = resolve(import.meta.dirname, '../..');

type ErrorClass = new (...args: unknown[]) => Error;

/** Every error class the activities' modules export, by the type Temporal gives its failures. */
const errorClasses = new Map<string, ErrorClass>();
for (const module of [
  auditErrors,
  calibrationSet,
  datasetStats,
  detectorPackage,
  prefillReview,
  masksFile,
  imageIo,
  imageSource,
  modelPackage,
  modelRegistry,
  objectStoreErrors,
  runRecord,
  shardPlan,
  shardRunner,
]) {
  for (const value of Object.values(module)) {
    if (typeof value === 'function' && value.prototype instanceof Error) {
      errorClasses.set(value.name, value as ErrorClass);
    }
  }
}

const TS_LISTS = {
  RECORD_RUN_ERRORS: policies.RECORD_RUN_ERRORS,
  BUILD_DATASET_ERRORS: policies.BUILD_DATASET_ERRORS,
  PLAN_SHARDS_ERRORS: policies.PLAN_SHARDS_ERRORS,
  PROBE_SHARD_ERRORS: policies.PROBE_SHARD_ERRORS,
  SEGMENT_SHARD_ERRORS: policies.SEGMENT_SHARD_ERRORS,
  AWAIT_SHARD_ERRORS: policies.AWAIT_SHARD_ERRORS,
  AUDIT_RUN_ERRORS: policies.AUDIT_RUN_ERRORS,
  PROBE_STORAGE_ERRORS: policies.PROBE_STORAGE_ERRORS,
  MODEL_REGISTRY_ERRORS: policies.MODEL_REGISTRY_ERRORS,
  STAGE1_ERRORS: policies.STAGE1_ERRORS,
  STAGE2_ERRORS: policies.STAGE2_ERRORS,
  CALIBRATION_ERRORS: policies.CALIBRATION_ERRORS,
};

describe('non-retryable error types', () => {
  for (const [list, names] of Object.entries(TS_LISTS)) {
    it(`${list} names only error classes that exist, whose name is their class name`, () => {
      for (const name of names) {
        const cls = errorClasses.get(name);
        expect(cls, `${list}: no error class is named ${name}`).toBeDefined();
        // Every constructor here takes strings first; the instance's name is what logs and users see.
        const instance = new cls!('s3://bucket/key', 'a reason', 'more');
        expect(instance.name, `${name}: name property`).toBe(name);
        expect(instance.constructor.name).toBe(name);
      }
    });
  }

  it('the Python trainer raises the exception classes its list names', () => {
    const dir = join(REPO, 'trainer/sae_trainer');
    const source = readdirSync(dir)
      .filter((f) => f.endsWith('.py'))
      .map((f) => readFileSync(join(dir, f), 'utf8'))
      .join('\n');
    for (const name of policies.TRAINING_ERRORS) expect(source).toContain(`raise ${name}(`);
  });

  it('the policy backs off from 1 second to at most a minute, and retries until an error is permanent', () => {
    expect(policies.retryPolicy(['X'])).toEqual({
      initialInterval: '1 second',
      backoffCoefficient: 2,
      maximumInterval: '1 minute',
      nonRetryableErrorTypes: ['X'],
    });
  });
});

describe('activity stubs in workflows/', () => {
  const dir = join(REPO, 'workflows');
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));

  it('every proxyActivities and proxyLocalActivities call has a retry policy made by retryPolicy()', () => {
    let stubs = 0;
    for (const file of files) {
      const source = readFileSync(join(dir, file), 'utf8');
      const calls = source.split(/proxy(?:Local)?Activities</).slice(1);
      for (const call of calls) {
        stubs += 1;
        const options = call.slice(0, call.indexOf('});'));
        expect(options, `${file}: a proxyActivities call without retryPolicy()`).toMatch(
          /retry: retryPolicy\(/,
        );
      }
    }
    // recordRun, buildDataset, planDataset, buildDatasetShard + finishDataset, planShards, awaitShard,
    // segmentShard, probeShard, the audit's, training, storage check, storeAnnotation; a stage-1
    // round's planShards, roundImages + roundProgress, closeRoundTasks, embedImages + exportRound,
    // the task's local storeAnnotation, the retrain's registry activities, the detector retrain's
    // training and registry activities; the retraining triggers' shared ensureChampion and
    // buildTrainingSet (workflows/training-stubs.ts); stage 2 (a round's prefillImages goes through
    // its inference-pool stub): the task's local pre-fill writes; both retrains' moveModelAlias;
    // the run's writeEngineReport; the retrain's calibrateModelVersion
    expect(stubs).toBe(26);
  });
});
