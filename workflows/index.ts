// Every workflow the orchestration workers serve. Workers bundle this file; it must import only
// workflow code and activity *types*.
export { storageCheck } from './storage-check.ts';
