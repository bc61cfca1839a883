// A real inference worker process whose segmenter kills the whole process (SIGKILL, as the OOM
// killer or a native crash would) when it reaches the image named in SAE_TEST_POISON_FILE; every
// other image goes through the real ONNX segmenter. Run with `node --import tsx`; the stack comes
// in SAE_TEST_STACK (JSON). Prints "poison worker ready" once it polls its queue.
import type { StackInfo } from '../../infra/stack-info.ts';
import { createSegmenterFactory } from '../../lib/stage3/segmenter.ts';
import type { ImageSegmenter } from '../../lib/stage3/shard-runner.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { startWorkers } from '../../workers/run-workers.ts';
import { storeOptionsFor } from './stage3-fixture.ts';

const stack = JSON.parse(process.env.SAE_TEST_STACK!) as StackInfo;
const poison = process.env.SAE_TEST_POISON_FILE!;
const storeOptions = storeOptionsFor(stack);
const real = createSegmenterFactory({ storeOptions });

const workers = await startWorkers({
  address: stack.temporal.address,
  namespace: stack.temporal.namespace,
  queues: [TASK_QUEUES.inference],
  storeOptions,
  async segmenterFor(modelUri, settings): Promise<ImageSegmenter> {
    const inner = await real(modelUri, settings);
    return {
      modelId: inner.modelId,
      segment(bytes, image, progress) {
        if (image.fileName === poison) {
          console.log(`poison worker: ${image.fileName} reached, dying`);
          process.kill(process.pid, 'SIGKILL');
        }
        return inner.segment(bytes, image, progress);
      },
    };
  },
});
console.log('poison worker ready');
await workers.done;
