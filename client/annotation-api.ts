// A typed client of the annotation service's HTTP API (service/annotation-service.ts), used by
// the simulated annotators, the benchmark and the tests: the same calls a browser makes.
//
// A call the service could not answer (it is restarting, or Temporal is) is retried for a while:
// every call is safe to repeat, a submit too (its submission id makes a repeat the same mask).
import pRetry, { AbortError } from 'p-retry';
import type { TaskResponse } from '../service/annotation-service.ts';
import type { SubmitResult } from '../lib/stage1/task-messages.ts';
import type { CocoRle } from '../lib/rle.ts';
import type { PrefillFile } from '../lib/stage2/prefill-store.ts';

export class AnnotationApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'AnnotationApiError';
  }
}

export interface MaskSubmission {
  submissionId: string;
  mask: CocoRle;
  seconds: number;
  clicks: number;
}

export interface RetryOptions {
  /** Attempts after the first; 0 fails at once (tests of refusals). */
  retries: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
}

/** About two minutes of trying: long enough for a service or server restart. */
const DEFAULT_RETRY: RetryOptions = { retries: 40, minTimeoutMs: 250, maxTimeoutMs: 4000 };

export class AnnotationApi {
  constructor(
    /** e.g. http://127.0.0.1:8750 */
    readonly baseUrl: string,
    private readonly token: string,
    private readonly retry: RetryOptions = DEFAULT_RETRY,
  ) {}

  /** Claims a free task; undefined when none is free now. */
  async next(): Promise<TaskResponse | undefined> {
    const res = await this.call('POST', '/api/tasks/next');
    return res.status === 204 ? undefined : ((await res.json()) as TaskResponse);
  }

  async task(task: string): Promise<TaskResponse> {
    return (await this.call('GET', `/api/tasks/${task}`)).json() as Promise<TaskResponse>;
  }

  async embedding(task: string): Promise<Buffer> {
    return Buffer.from(await (await this.call('GET', `/api/tasks/${task}/embedding`)).arrayBuffer());
  }

  async image(task: string): Promise<Buffer> {
    return Buffer.from(await (await this.call('GET', `/api/tasks/${task}/image`)).arrayBuffer());
  }

  async submit(task: string, mask: MaskSubmission): Promise<SubmitResult> {
    return (await this.call('POST', `/api/tasks/${task}/masks`, mask)).json() as Promise<SubmitResult>;
  }

  async finish(task: string): Promise<void> {
    await this.call('POST', `/api/tasks/${task}/finish`, {});
  }

  async skip(task: string): Promise<void> {
    await this.call('POST', `/api/tasks/${task}/skip`, {});
  }

  /** Stage 2: the task's pre-filled masks. */
  async prefill(task: string): Promise<PrefillFile> {
    return (await this.call('GET', `/api/tasks/${task}/prefill`)).json() as Promise<PrefillFile>;
  }

  /** Stage 2: deletes pre-filled mask `index` (kept as rejected); returns the indices deleted so far. */
  async rejectPrefill(task: string, index: number, reason: string): Promise<{ rejected: number[] }> {
    const res = await this.call('POST', `/api/tasks/${task}/prefill/${index}/reject`, { reason });
    return res.json() as Promise<{ rejected: number[] }>;
  }

  async flag(task: string, reason: string): Promise<void> {
    await this.call('POST', `/api/tasks/${task}/flag`, { reason });
  }

  /** Any call, for tests of what the service refuses; throws AnnotationApiError on a non-2xx status. */
  async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Response> {
    return pRetry(
      async () => {
        try {
          return await this.once(method, path, body);
        } catch (err) {
          // A refusal (4xx) is an answer; a 5xx or no answer at all may go away.
          if (err instanceof AnnotationApiError && err.status < 500) throw new AbortError(err);
          throw err;
        }
      },
      {
        retries: this.retry.retries,
        minTimeout: this.retry.minTimeoutMs,
        maxTimeout: this.retry.maxTimeoutMs,
      },
    );
  }

  private async once(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Response> {
    const res = await fetch(new URL(path, this.baseUrl), {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) {
      const text = await res.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw new AnnotationApiError(res.status, `${method} ${path}: ${res.status} ${message}`);
    }
    return res;
  }
}
