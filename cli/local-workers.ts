// Workers inside the CLI process, for the embedded default (`run --workers`, `demo`): the
// orchestration and inference pools with the ONNX segmenter.
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { createSegmenterFactory } from '../lib/segmenter.ts';
import { startWorkers, type RunningWorkers } from '../workers/run-workers.ts';
import type { Endpoints } from './endpoints.ts';

export async function startLocalWorkers(endpoints: Endpoints): Promise<RunningWorkers> {
  return startWorkers({
    address: endpoints.address,
    namespace: endpoints.namespace,
    queues: [TASK_QUEUES.orchestration, TASK_QUEUES.inference],
    storeOptions: endpoints.storeOptions,
    segmenterFor: createSegmenterFactory({ storeOptions: endpoints.storeOptions }),
  });
}
