// A stage-1 round's spec for the integration tests: synthetic images under `imagesUri/images`, the
// committed reference model, and settings that keep a round to seconds on 2 cores (polls every
// second, float16 embeddings). Each test names only what it changes.
import type { RoundSpec } from '../../workflows/stage1-round.ts';
import { REFERENCE_MODEL_URI } from './stage3-fixture.ts';

export function testRoundSpec(
  where: { runId: string; outputUri: string; imagesUri: string; round: number; imageCount: number },
  overrides: Partial<RoundSpec> = {},
): RoundSpec {
  return {
    runId: where.runId,
    outputUri: where.outputUri,
    round: where.round,
    modelUri: REFERENCE_MODEL_URI,
    plan: { images: { prefix: `${where.imagesUri}/images`, extensions: ['jpg', 'png'] }, shardSize: 10 },
    firstImage: 0,
    imageCount: where.imageCount,
    embeddingDtype: 'float16',
    embedBatch: 2,
    embedWindow: 1,
    leaseSeconds: 300,
    targetMasks: null,
    deadlineSeconds: 3600,
    pollSeconds: 1,
    tasksPerWorkflowRun: 100,
    ...overrides,
  };
}
