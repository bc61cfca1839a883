// The TypeScript activities a worker process registers. Every pool registers the same set; the
// workflows route each activity to its pool through its task queue.
import { createAuditActivities } from '../activities/audit.ts';
import { createCalibrationActivities } from '../activities/calibration.ts';
import { createDatasetActivities } from '../activities/dataset.ts';
import { createModelActivities } from '../activities/models.ts';
import { createReportActivities } from '../activities/report.ts';
import { createStage1Activities } from '../activities/stage1.ts';
import { createStage2Activities } from '../activities/stage2.ts';
import { createStage3Activities, type Stage3Deps } from '../activities/stage3.ts';
import { createStorageCheckActivities } from '../activities/storage-check.ts';
import type { ObjectStoreOptions } from '../lib/object-store.ts';
import { createDetectorSessionFactory, type DetectorSessionFactory } from '../lib/detector/local-detector.ts';
import { createSamSessionFactory, type SamSessionFactory } from '../lib/sam/local-model.ts';

export interface ActivityDeps extends Stage3Deps {
  storeOptions: ObjectStoreOptions;
  /** SAM sessions for stage 1's embeddings; default: one per model for the worker's life. */
  sessionFor?: SamSessionFactory;
  /** Stage 2's detector sessions; default: one per detector and SAM encoder for the worker's life. */
  detectorFor?: DetectorSessionFactory;
}

export function createActivities(deps: ActivityDeps) {
  const sessionFor = deps.sessionFor ?? createSamSessionFactory(deps.storeOptions);
  return {
    ...createStorageCheckActivities(deps.storeOptions),
    ...createStage1Activities({ storeOptions: deps.storeOptions, sessionFor }),
    ...createStage2Activities({
      storeOptions: deps.storeOptions,
      sessionFor,
      detectorFor: deps.detectorFor ?? createDetectorSessionFactory(deps.storeOptions),
    }),
    ...createStage3Activities(deps),
    ...createDatasetActivities(deps.storeOptions),
    ...createAuditActivities(deps.storeOptions),
    ...createModelActivities(deps.storeOptions),
    ...createCalibrationActivities(deps.storeOptions),
    ...createReportActivities(deps.storeOptions),
  };
}
