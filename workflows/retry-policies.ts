// How every activity of sa-engine's workflows is retried. One rule throughout: an error that a retry
// can fix (a storage outage, a dead worker, a timeout) is retried with a backoff that never waits
// more than a minute; an error that a retry cannot fix (a wrong bucket, bad credentials, a broken
// model package, bad input data) fails at once. The second kind is recognised by its error type,
// which Temporal takes from the error's class name (constructor.name): each name below is a class
// that the activities behind that list really throw, which test/unit/retry-policies.test.ts checks.
// Activities do not throw ApplicationFailure.nonRetryable themselves; they throw these classes.
import type { RetryPolicy } from '@temporalio/common';

/** lib/object-store/errors.ts: the store is set up wrongly; ObjectStoreError itself may be an outage. */
export const STORAGE_SETUP_ERRORS = [
  'BucketNotFoundError',
  'AccessDeniedError',
  'InvalidCredentialsError',
  'InvalidKeyError',
  'UnsupportedOperationError',
  'InvalidStoreUriError',
] as const;

/** lib/images/image-io.ts, as loadImage throws them: the file is not an image this engine reads. */
export const IMAGE_ERRORS = ['EmptyImageError', 'UnsupportedImageError', 'CorruptImageError'] as const;

/** recordRun: writes run.json. */
export const RECORD_RUN_ERRORS = [
  ...STORAGE_SETUP_ERRORS,
  'RunAlreadyCompletedError',
  'RunIdentityMismatchError',
];

/**
 * planDataset, buildDatasetShard, finishDataset and the older buildDataset (lib/dataset/build.ts):
 * read the stage-3 results and SA-1B files, decode images for release copies, merge the shards.
 */
export const BUILD_DATASET_ERRORS = [
  ...STORAGE_SETUP_ERRORS,
  'NoStage3OutputError',
  'MasksFileError',
  'DatasetShardError',
  ...IMAGE_ERRORS,
];

/** planShards (lib/stage3/shard-plan.ts): lists or reads the image source and writes the shard manifests. */
export const PLAN_SHARDS_ERRORS = [...STORAGE_SETUP_ERRORS, 'ImageSourceError', 'PlanMismatchError'];

/** probeShard (lib/stage3/shard-probe.ts): reads image headers; an unreadable image is a result, not an error. */
export const PROBE_SHARD_ERRORS = [...STORAGE_SETUP_ERRORS];

/**
 * segmentShard (lib/stage3/shard-runner.ts, lib/stage3/segmenter.ts): an unreadable image is a result, not an
 * error; a broken model package or a shard whose finished parts have gone are not retried.
 */
export const SEGMENT_SHARD_ERRORS = [
  ...STORAGE_SETUP_ERRORS,
  'ModelPackageError',
  'ShardPartsMissingError',
  'ShardSettingsMismatchError',
];

/**
 * Stage 1's activities (activities/stage1.ts): store annotations and flags, embed a round's images
 * (an unreadable image is a result, not an error), count and close tasks, export the round.
 */
export const STAGE1_ERRORS = [...STORAGE_SETUP_ERRORS, 'ModelPackageError'];

/**
 * Stage 2's activities (activities/stage2.ts): pre-fill a round's images from the detector's boxes
 * (an image without a usable embedding is a result, not an error), keep deleted and accepted
 * pre-filled masks. A detector package that does not fit SAM's encoder, or a pre-fill file gone
 * from storage, is not retried.
 */
export const STAGE2_ERRORS = [
  ...STORAGE_SETUP_ERRORS,
  'ModelPackageError',
  'DetectorPackageError',
  'PrefillMissingError',
];

/**
 * calibrateModelVersion (activities/calibration.ts): a version package that does not load, an
 * evaluation set without held-out images or masks, an image this engine cannot read.
 */
export const CALIBRATION_ERRORS = [
  ...STORAGE_SETUP_ERRORS,
  'ModelPackageError',
  'CalibrationInputError',
  'AuditInputError',
  ...IMAGE_ERRORS,
];

/** awaitShard: waits on a shard workflow started by an earlier run of the stage. */
export const AWAIT_SHARD_ERRORS = ['ShardFailedError'];

/**
 * The audit's activities (lib/audit): bad reference data or automatic masks surface as
 * AuditInputError; a sample and matches that do not belong together as AuditSampleError.
 */
export const AUDIT_RUN_ERRORS = [...STORAGE_SETUP_ERRORS, 'AuditInputError', 'AuditSampleError'];

/** writeEngineReport (activities/report.ts): a stored file it cannot read is EngineReportError. */
export const ENGINE_REPORT_ERRORS = [...STORAGE_SETUP_ERRORS, 'EngineReportError'];

/** probeStorage (activities/storage-check.ts). */
export const PROBE_STORAGE_ERRORS = [...STORAGE_SETUP_ERRORS];

/**
 * trainSam / evaluateSam, the Python trainer (trainer/sae_trainer): the Python SDK names a failure
 * after the exception's class. The trainer raises ValueError for settings and data it cannot use
 * and FileNotFoundError for missing files; its own checks raise non-retryable ApplicationErrors.
 */
export const TRAINING_ERRORS = ['ValueError', 'FileNotFoundError'];

/** The model registry's activities (activities/models.ts): a bad name or version, or a moved alias. */
export const MODEL_REGISTRY_ERRORS = [...STORAGE_SETUP_ERRORS, 'RegistryError', 'AliasConflictError'];

/** Retries with a bounded backoff (1 s, 2 s, 4 s, ... at most 1 minute apart) and the given permanent errors. */
export function retryPolicy(nonRetryableErrorTypes: readonly string[], more: RetryPolicy = {}): RetryPolicy {
  return {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '1 minute',
    nonRetryableErrorTypes: [...nonRetryableErrorTypes],
    ...more,
  };
}
