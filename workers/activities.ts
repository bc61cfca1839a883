// The TypeScript activities a worker process registers. Every pool registers the same set; the
// workflows route each activity to its pool through its task queue.
import { createAuditActivities } from '../activities/audit.ts';
import { createDatasetActivities } from '../activities/dataset.ts';
import { createStage3Activities, type Stage3Deps } from '../activities/stage3.ts';
import { createStorageCheckActivities } from '../activities/storage-check.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';

export interface ActivityDeps extends Stage3Deps {
  storeOptions: ObjectStoreOptions;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createStorageCheckActivities(deps.storeOptions),
    ...createStage3Activities(deps),
    ...createDatasetActivities(deps.storeOptions),
    ...createAuditActivities(deps.storeOptions),
  };
}
