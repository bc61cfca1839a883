// Every workflow the orchestration workers serve. Workers bundle this file; it must import only
// workflow code and activity *types*. An export's name is its Temporal workflow type, recorded in
// every history: stage 3's `automaticStage` and `automaticShard` (files stage3.ts, stage3-shard.ts)
// keep the names their runs were started with, so that those runs and histories stay valid.
export { storageCheck } from './storage-check.ts';
export { datasetRun } from './dataset-run.ts';
export { automaticStage } from './stage3.ts';
export { automaticShard } from './stage3-shard.ts';
export { retrainSam } from './retrain.ts';
export { retrainDetector } from './retrain-detector.ts';
export { auditStage } from './audit.ts';
export { dryRun } from './dry-run.ts';
export { datasetBuild } from './dataset-build.ts';
export { annotationTask } from './stage1-task.ts';
export { annotationRound } from './stage1-round.ts';
