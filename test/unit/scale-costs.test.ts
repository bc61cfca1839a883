// The cost counting of `npm run bench:scale` (bench/scale-costs.ts): Temporal Cloud actions from
// histories and from the server's counter, S3 requests from versitygw's access log.
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import {
  countsSince,
  historyActions,
  keyPattern,
  parseAccessLog,
  parseActionMetric,
  requestScope,
  summariseS3,
  sumCounts,
} from '../../bench/scale-costs.ts';

const E = proto.temporal.api.enums.v1.EventType;

/** A marker event as fetchHistory returns it (its event id an int64, a Long). */
function marker(workflowTaskCompletedEventId: number) {
  return proto.temporal.api.history.v1.HistoryEvent.fromObject({
    eventType: E.EVENT_TYPE_MARKER_RECORDED,
    markerRecordedEventAttributes: { workflowTaskCompletedEventId },
  });
}

describe('historyActions', () => {
  it('counts what Temporal Cloud bills: starts, child starts, activities and their retries, upserts, one per batch of markers', () => {
    const events: proto.temporal.api.history.v1.IHistoryEvent[] = [
      { eventType: E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED },
      { eventType: E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED },
      { eventType: E.EVENT_TYPE_WORKFLOW_TASK_STARTED },
      { eventType: E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED },
      // Two patch markers of one workflow task count once; a marker of another task once more.
      marker(4),
      marker(4),
      marker(9),
      { eventType: E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED },
      // Third attempt: two retries.
      { eventType: E.EVENT_TYPE_ACTIVITY_TASK_STARTED, activityTaskStartedEventAttributes: { attempt: 3 } },
      { eventType: E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED },
      { eventType: E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED },
      { eventType: E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED },
      { eventType: E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES },
      { eventType: E.EVENT_TYPE_TIMER_STARTED },
      { eventType: E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED },
      // The new run's WORKFLOW_EXECUTION_STARTED is the continue-as-new's action, not this event.
      { eventType: E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW },
    ];
    const actions = historyActions(events);
    expect(actions).toEqual({
      'workflow started': 1,
      'markers (one per workflow task)': 2,
      'activity scheduled': 1,
      'activity retried': 2,
      'child workflow initiated': 1,
      'search attributes upserted': 1,
      'timer started': 1,
      'signal received': 1,
    });
    expect(sumCounts(actions)).toBe(10);
  });
});

describe('parseActionMetric', () => {
  it("sums the namespace's action counter by type, with markers counted per batch only", () => {
    const text = [
      '# HELP action action counter',
      '# TYPE action counter',
      'action{action_type="grpc_StartWorkflowExecution",namespace="temporal_system",operation="StartWorkflowExecution",service_name="frontend"} 7',
      'action{action_type="grpc_StartWorkflowExecution",namespace="default",operation="StartWorkflowExecution",service_name="frontend"} 1',
      'action{action_type="command_ScheduleActivityTask",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 21',
      'action{action_type="command_RecordMarker_core_patch",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 2',
      'action{action_type="command_BatchMarkers",namespace="default",operation="RespondWorkflowTaskCompleted",service_name="frontend"} 1',
      'action_other{action_type="x",namespace="default"} 5',
    ].join('\n');
    const counts = parseActionMetric(text, 'default');
    expect(counts).toEqual({
      grpc_StartWorkflowExecution: 1,
      command_ScheduleActivityTask: 21,
      command_BatchMarkers: 1,
    });
    expect(countsSince(counts, { command_ScheduleActivityTask: 20, command_BatchMarkers: 1 })).toEqual({
      grpc_StartWorkflowExecution: 1,
      command_ScheduleActivityTask: 1,
    });
  });
});

// Lines as versitygw v1.8.0 writes them (user agent and host id shortened).
const LOG = `log starts 2026-12-07 18:20:20.386257649 +0000 UTC m=+0.193849404
k scale [07/December/2026:18:20:22 +0000] 127.0.0.1 k 4XARYAE1 s3_PutObject out/runs/scale/masks/17.json /scale/out/runs/scale/masks/17.json?x-id=PutObject 200 - 0 2 3 3 - aws-sdk-js/3.1174.0 - J8jMY
k scale [07/December/2026:18:20:22 +0000] 127.0.0.1 k BDA6NFYX s3_GetObject images/0001/0001234.png /scale/images/0001/0001234.png?x-id=GetObject 200 - 0 0 0 0 - aws-sdk-js/3.1174.0 - hm5J
k scale [07/December/2026:18:20:23 +0000] 127.0.0.1 k HGMC0J2Z s3_HeadObject out/runs/scale/stage3/shards/000001.result.jsonl /scale/out/runs/scale/stage3/shards/000001.result.jsonl 404 NoSuchKey 0 0 0 0 - aws-sdk-js/3.1174.0 - qXPq
k scale [07/December/2026:18:20:23 +0000] 127.0.0.1 k NFE1RALG s3_ListObjectsV2 - /scale/?list-type=2&max-keys=1000&prefix=images%2F 200 - 782 0 0 0 - aws-sdk-js/3.1174.0 - h8KM
k scale [07/December/2026:18:20:23 +0000] 127.0.0.1 k EQFAAVHE s3_DeleteObject out/runs/scale/stage3/shards/000001.parts/000000008.jsonl /scale/out/runs/scale/stage3/shards/000001.parts/000000008.jsonl?x-id=DeleteObject 200 - 0 0 3 3 - aws-sdk-js/3.1174.0 - xTz1
`;

describe('parseAccessLog', () => {
  it('reads operation, key pattern, status and time of each request, skipping the header', () => {
    const requests = parseAccessLog(LOG);
    expect(requests.map((r) => [r.op, r.pattern, r.status])).toEqual([
      ['PUT', 'out/runs/scale/masks/#.json', 200],
      ['GET', 'images/#/#.png', 200],
      ['HEAD', 'out/runs/scale/stage3/shards/#.result.jsonl', 404],
      ['LIST', 'list images/', 200],
      ['DELETE', 'out/runs/scale/stage3/shards/#.parts/#.jsonl', 200],
    ]);
    expect(requests[0]!.time).toBe(Date.UTC(2026, 11, 7, 18, 20, 22) / 1000);
  });

  it('turns a time zone offset into UTC', () => {
    const line = LOG.split('\n')[1]!.replace('+0000', '+0130');
    expect(parseAccessLog(line)[0]!.time).toBe(Date.UTC(2026, 11, 7, 16, 50, 22) / 1000);
  });

  it('sums by operation and pattern, counts errors and finds the busiest second per rate class', () => {
    const summary = summariseS3(parseAccessLog(LOG));
    expect(summary).toMatchObject({
      requests: 5,
      byOp: { PUT: 1, GET: 1, HEAD: 1, LIST: 1, DELETE: 1 },
      errors: 1,
      // 18:20:23 saw a DELETE (write class) and a HEAD and a LIST (read class).
      peakPerSecond: { write: 1, read: 2 },
      seconds: 2,
    });
    expect(summary.byPattern['PUT out/runs/scale/masks/#.json']).toBe(1);
  });
});

describe('keyPattern and requestScope', () => {
  it('keeps numbers that are part of a name', () => {
    expect(keyPattern('out/runs/scale/stage3/shards/000012.input.jsonl')).toBe(
      'out/runs/scale/stage3/shards/#.input.jsonl',
    );
    expect(keyPattern('images/synth-000003.jpg')).toBe('images/synth-#.jpg');
  });

  it('says whether a request grows with the images, the shards or neither', () => {
    expect(requestScope('GET images/#/#.png', 'images/')).toBe('image');
    expect(requestScope('LIST list images/', 'images/')).toBe('image');
    expect(requestScope('PUT out/runs/scale/masks/#.json', 'images/')).toBe('image');
    expect(requestScope('PUT out/runs/scale/stage3/shards/#.parts/#.jsonl', 'images/')).toBe('shard');
    expect(requestScope('LIST list out/runs/scale/stage3/shards/#.parts/', 'images/')).toBe('shard');
    expect(requestScope('PUT out/runs/scale/stage3/plan.json', 'images/')).toBe('run');
  });
});
