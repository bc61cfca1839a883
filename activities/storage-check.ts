// Activity behind workflows/storage-check.ts: a write / read / compare / delete round trip.
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ApplicationFailure } from '@temporalio/common';
import { openObjectStore, type ObjectStoreOptions } from '../lib/object-store.ts';

export interface ProbeInput {
  storeUri: string;
  probeKey: string;
}

export interface ProbeResult {
  uri: string;
  bytes: number;
  sha256: string;
  worker: string;
}

export function createStorageCheckActivities(storeOptions: ObjectStoreOptions = {}) {
  return {
    async probeStorage({ storeUri, probeKey }: ProbeInput): Promise<ProbeResult> {
      const store = openObjectStore(storeUri, storeOptions);
      const body = randomBytes(64 * 1024);
      await store.put(probeKey, body);
      const back = await store.get(probeKey);
      await store.delete(probeKey);
      const sha256 = createHash('sha256').update(body).digest('hex');
      if (createHash('sha256').update(back).digest('hex') !== sha256) {
        throw ApplicationFailure.nonRetryable(`read back different bytes from ${store.uri(probeKey)}`);
      }
      return { uri: store.uri(probeKey), bytes: back.length, sha256, worker: hostname() };
    },
  };
}

export type StorageCheckActivities = ReturnType<typeof createStorageCheckActivities>;
