// One shard of the fully automatic stage: a single long activity on the inference pool streams
// through the shard's manifest, heartbeating its position so that a retry resumes, not restarts.
import { proxyActivities } from '@temporalio/workflow';
import type { Stage3Activities, SegmentShardInput, ShardResult } from '../activities/stage3.ts';
import { TASK_QUEUES } from '../lib/task-queues.ts';
import { PROBE_SHARD_ERRORS, retryPolicy, SEGMENT_SHARD_ERRORS } from './retry-policies.ts';

export const DEFAULT_SHARD_HEARTBEAT_TIMEOUT_SECONDS = 120;

/** The activity stub, per shard: the heartbeat timeout comes from the run's config. */
function shardActivities(heartbeatTimeoutSeconds: number) {
  return proxyActivities<Stage3Activities>({
    taskQueue: TASK_QUEUES.inference,
    // A shard of big images on a CPU can take hours; the heartbeat is what detects a dead worker.
    startToCloseTimeout: '24 hours',
    heartbeatTimeout: heartbeatTimeoutSeconds * 1000,
    // A broken model package or storage setup will not fix itself on a retry.
    retry: retryPolicy(SEGMENT_SHARD_ERRORS),
  });
}

// A dry run reads headers only: no model, so it runs on the orchestration pool.
const { probeShard } = proxyActivities<Stage3Activities>({
  taskQueue: TASK_QUEUES.orchestration,
  startToCloseTimeout: '2 hours',
  heartbeatTimeout: '2 minutes',
  retry: retryPolicy(PROBE_SHARD_ERRORS),
});

export async function automaticShard(input: SegmentShardInput): Promise<ShardResult> {
  if (input.dryRun) return probeShard(input);
  const { segmentShard } = shardActivities(
    input.heartbeatTimeoutSeconds ?? DEFAULT_SHARD_HEARTBEAT_TIMEOUT_SECONDS,
  );
  return segmentShard(input);
}
