// What a benchmark run cost Temporal and S3, for `npm run bench:scale` and docs/scale.md:
//
// - Temporal Cloud actions, counted two ways. From the workflow histories, by the event types that
//   https://docs.temporal.io/cloud/actions maps to actions (which misses what no history records:
//   heartbeats and queries). And from the server's own `action` counter (frontend, per namespace),
//   which meters the same gRPC calls and commands and does see heartbeats and queries.
// - S3 requests by operation and key pattern, from versitygw's access log (`--access-log`, or the
//   VGW_ACCESS_LOG environment variable it reads), so every process that talks to the server counts.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import proto from '@temporalio/proto';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;
const EventType = proto.temporal.api.enums.v1.EventType;

/** Billable actions recorded in one history, by kind, per the Temporal Cloud actions page. */
export function historyActions(events: readonly HistoryEvent[]): Record<string, number> {
  const actions: Record<string, number> = {};
  const add = (kind: string, n = 1) => {
    if (n > 0) actions[kind] = (actions[kind] ?? 0) + n;
  };
  // All markers recorded by one workflow task count once (local activities, patches, side effects).
  const markerTasks = new Set<string>();
  for (const event of events) {
    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        // Client start, child start (the child's half of its two actions) and continue-as-new.
        add('workflow started');
        break;
      case EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        add('child workflow initiated'); // the parent's half: intent to start, stored durably
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        add('activity scheduled');
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        add('activity retried', (event.activityTaskStartedEventAttributes?.attempt ?? 1) - 1);
        break;
      case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        add('search attributes upserted');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
        add('workflow options updated');
        break;
      case EventType.EVENT_TYPE_TIMER_STARTED:
        add('timer started');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        add('signal received');
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        add('update accepted');
        break;
      case EventType.EVENT_TYPE_MARKER_RECORDED:
        markerTasks.add(String(event.markerRecordedEventAttributes?.workflowTaskCompletedEventId ?? ''));
        break;
      default:
    }
  }
  add('markers (one per workflow task)', markerTasks.size);
  return actions;
}

/** Adds `more` into `total`, kind by kind. */
export function addCounts(total: Record<string, number>, more: Record<string, number>): void {
  for (const [kind, n] of Object.entries(more)) total[kind] = (total[kind] ?? 0) + n;
}

export function sumCounts(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/**
 * The server's `action` counter for one namespace, by action type, from its Prometheus text.
 * `command_RecordMarker_<name>` is left out: the server also counts `command_BatchMarkers` once per
 * workflow task with markers, which is how Temporal Cloud bills them.
 */
export function parseActionMetric(text: string, namespace: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^action\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries(
      [...m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]),
    );
    const type = labels.action_type;
    if (labels.namespace !== namespace || type === undefined) continue;
    if (type.startsWith('command_RecordMarker_')) continue;
    counts[type] = (counts[type] ?? 0) + Number(m[2]);
  }
  return counts;
}

/** `after - before`, kind by kind, leaving out kinds that did not move. */
export function countsSince(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const [kind, n] of Object.entries(after)) {
    const d = n - (before[kind] ?? 0);
    if (d !== 0) delta[kind] = d;
  }
  return delta;
}

/**
 * The `/metrics` address of a local process (the Temporal dev server picks a random port for it
 * unless told one): tries each TCP port the process listens on. Linux only (/proc).
 */
export async function findMetricsUrl(pid: number): Promise<string | undefined> {
  const sockets = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) sockets.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const row of text.split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      // f[3] is the socket state (0A: listening), f[9] its inode.
      if (f[3] === '0A' && sockets.has(f[9]!)) ports.add(parseInt(f[1]!.split(':').at(-1)!, 16));
    }
  }
  for (const port of ports) {
    const url = `http://127.0.0.1:${port}/metrics`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (res.ok && /^# TYPE action counter$/m.test(await res.text())) return url;
    } catch {
      // not HTTP (the gRPC ports)
    }
  }
  return undefined;
}

export async function readActionMetric(url: string, namespace: string): Promise<Record<string, number>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return parseActionMetric(await res.text(), namespace);
}

/** One request in versitygw's access log (S3 server-access-log format). */
export interface S3Request {
  /** e.g. "GET", "HEAD", "PUT", "LIST", "DELETE", or the S3 action name for anything else. */
  op: string;
  /** The key with every run of digits as "#"; for a listing, "list " and its prefix. */
  pattern: string;
  status: number;
  /** Seconds since the epoch (the log's resolution is one second). */
  time: number;
}

const OPS: Record<string, string> = {
  s3_GetObject: 'GET',
  s3_HeadObject: 'HEAD',
  s3_PutObject: 'PUT',
  s3_CreateMultipartUpload: 'PUT',
  s3_UploadPart: 'PUT',
  s3_CompleteMultipartUpload: 'PUT',
  s3_CopyObject: 'PUT',
  s3_DeleteObject: 'DELETE',
  s3_DeleteObjects: 'DELETE',
  s3_ListObjectsV2: 'LIST',
  s3_ListObjects: 'LIST',
};

/** S3's request-rate classes: PUT/COPY/POST/DELETE share one limit, GET/HEAD another; LIST is a GET. */
export function rateClass(op: string): 'write' | 'read' {
  return op === 'PUT' || op === 'DELETE' ? 'write' : 'read';
}

const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
];

// owner bucket [time] remote-ip requester request-id operation key request-uri status ...
const LINE =
  /^\S+ \S+ \[(\d+)\/(\w+)\/(\d+):(\d+):(\d+):(\d+) ([+-]\d{4})\] \S+ \S+ \S+ (\S+) (\S+) (\S+) (\d{3}) /;

/** The requests of a versitygw access log; lines of another shape (its header) are skipped. */
export function parseAccessLog(text: string): S3Request[] {
  const requests: S3Request[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const [, day, month, year, hh, mm, ss, zone, action, key, uri, status] = m;
    const sign = zone!.startsWith('-') ? -1 : 1;
    const offsetMinutes = sign * (Number(zone!.slice(1, 3)) * 60 + Number(zone!.slice(3)));
    const local = Date.UTC(
      Number(year),
      MONTHS.indexOf(month!),
      Number(day),
      Number(hh),
      Number(mm),
      Number(ss),
    );
    const op = OPS[action!] ?? action!.replace(/^s3_/, '');
    requests.push({
      op,
      pattern: op === 'LIST' ? `list ${listPrefix(uri!)}` : keyPattern(decodeURIComponent(key!)),
      status: Number(status),
      time: local / 1000 - offsetMinutes * 60,
    });
  }
  return requests;
}

function listPrefix(uri: string): string {
  const query = uri.includes('?') ? uri.slice(uri.indexOf('?') + 1) : '';
  return keyPattern(new URLSearchParams(query).get('prefix') ?? '');
}

/**
 * `out/runs/x/masks/123.json` → `out/runs/x/masks/#.json`: one line per kind of object. Numbers
 * glued to a word (`stage3`, `v2`) are part of the name and stay.
 */
export function keyPattern(key: string): string {
  return key.replace(/(?<![A-Za-z])\d+/g, '#');
}

/**
 * What a request's count grows with, judged from its key pattern: each image (the images and
 * the per-image outputs), each shard (manifests, parts, shard summaries), or the run (the rest).
 */
export function requestScope(pattern: string, imagesPrefix: string): 'image' | 'shard' | 'run' {
  const key = pattern.replace(/^\S+ /, ''); // "GET images/#/#.png" → "images/#/#.png"
  // Listing the images: one request per 1,000 keys, so it grows with the images too.
  if (key.startsWith('list ')) {
    const prefix = key.slice('list '.length);
    if (prefix.startsWith(imagesPrefix)) return 'image';
    return prefix.includes('/shards/#') ? 'shard' : 'run';
  }
  if (key.startsWith(imagesPrefix) || /\/(masks|embeddings|dataset\/images)\/#\./.test(key)) return 'image';
  if (key.includes('/shards/#')) return 'shard';
  return 'run';
}

export interface S3Summary {
  requests: number;
  byOp: Record<string, number>;
  /** `op pattern` → requests. */
  byPattern: Record<string, number>;
  /** Requests the server answered with an error status (404 of a HEAD included). */
  errors: number;
  /** Busiest second, per rate class (S3's PUT-class and GET-class limits). */
  peakPerSecond: { write: number; read: number };
  seconds: number;
}

export function summariseS3(requests: readonly S3Request[]): S3Summary {
  const byOp: Record<string, number> = {};
  const byPattern: Record<string, number> = {};
  const perSecond = { write: new Map<number, number>(), read: new Map<number, number>() };
  let errors = 0;
  let first = Infinity;
  let last = -Infinity;
  for (const r of requests) {
    first = Math.min(first, r.time);
    last = Math.max(last, r.time);
    byOp[r.op] = (byOp[r.op] ?? 0) + 1;
    const p = `${r.op} ${r.pattern}`;
    byPattern[p] = (byPattern[p] ?? 0) + 1;
    if (r.status >= 400) errors += 1;
    const bucket = perSecond[rateClass(r.op)];
    bucket.set(r.time, (bucket.get(r.time) ?? 0) + 1);
  }
  const peak = (m: Map<number, number>) => [...m.values()].reduce((a, b) => Math.max(a, b), 0);
  return {
    requests: requests.length,
    byOp,
    byPattern,
    errors,
    peakPerSecond: { write: peak(perSecond.write), read: peak(perSecond.read) },
    seconds: requests.length === 0 ? 0 : last - first + 1,
  };
}
