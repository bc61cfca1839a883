// Every workflow the orchestration workers serve. Workers bundle this file; it must import only
// workflow code and activity *types*.
export { storageCheck } from './storage-check.ts';
export { datasetRun } from './dataset-run.ts';
export { automaticStage } from './automatic-stage.ts';
export { automaticShard } from './automatic-shard.ts';
export { retrainSam } from './retrain.ts';
export { auditStage } from './audit.ts';
export { dryRun } from './dry-run.ts';
