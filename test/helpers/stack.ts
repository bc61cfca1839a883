// Integration tests read the dev stack started by test/integration/global-setup.ts through inject('stack').
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import type { StackInfo } from '../../infra/stack-info.ts';
import type { ObjectStoreOptions } from '../../lib/object-store.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}

export function testStack(): StackInfo {
  return inject('stack');
}

/** How lib/object-store reaches the stack's S3 server. */
export function storeOptionsFor(stack: StackInfo): ObjectStoreOptions {
  const { endpoint, region, accessKeyId, secretAccessKey } = stack.s3;
  return { s3: { endpoint, region, accessKeyId, secretAccessKey, forcePathStyle: true } };
}

/** A fresh key prefix per test run, so reruns against a long-lived server never see each other's keys. */
export function uniqueTestPrefix(name: string): string {
  return `${name}/${new Date().toISOString().replace(/[:.]/g, '-')}-${randomUUID().slice(0, 8)}`;
}
