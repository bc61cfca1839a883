// `sa-engine run --dry-run`: the fully automatic stage's planning and fan-out, but each shard only
// reads its images' headers. Reports counts, sizes, unreadable files and the work a real run would
// do, without loading the model. Its workflows live under `<run>/dry-run`, so the real run's id
// stays free; the shard manifests it writes are the ones the real run will use.
import { executeChild } from '@temporalio/workflow';
import type { Stage3Spec } from '../activities/stage3.ts';
import { automaticStage, type AutomaticStageResult } from './stage3.ts';
import { SAE_RUN, SAE_STAGE } from './search-attributes.ts';

export function dryRunWorkflowId(runId: string): string {
  return `${runId}/dry-run`;
}

export async function dryRun(spec: Stage3Spec): Promise<AutomaticStageResult> {
  const base = dryRunWorkflowId(spec.runId);
  return executeChild(automaticStage, {
    workflowId: `${base}/stage3`,
    args: [
      { spec: { ...spec, workflowIdBase: base, shardTemplate: { ...spec.shardTemplate, dryRun: true } } },
    ],
    typedSearchAttributes: [
      { key: SAE_RUN, value: spec.runId },
      { key: SAE_STAGE, value: 'dry-run' },
    ],
  });
}
