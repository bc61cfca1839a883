// A worker's detector sessions: one per (detector, SAM encoder) for the worker's life, the package
// copied to the local cache first when it lives in S3 (as SAM's, ../sam/local-model.ts). A
// detector is loaded against the SAM whose embeddings it will read, so a detector trained on
// another encoder is refused at load (DetectorPackageError), never run on the wrong embeddings.
import { join } from 'node:path';
import type { ObjectStoreOptions } from '../object-store.ts';
import { localModelDir } from '../sam/local-model.ts';
import type { SamSession, SessionSettings } from '../sam/session.ts';
import { encoderDigest } from './detector-package.ts';
import { DetectorSession } from './detector.ts';

export type DetectorSessionFactory = (
  detectorUri: string,
  sam: SamSession,
  settings?: SessionSettings,
) => Promise<DetectorSession>;

export function createDetectorSessionFactory(storeOptions: ObjectStoreOptions = {}): DetectorSessionFactory {
  const cache = new Map<string, Promise<DetectorSession>>();
  const encoderDigests = new Map<string, Promise<string>>();
  const digestOf = (sam: SamSession) => {
    const file = join(sam.pkg.dir, sam.pkg.encoder.file);
    let digest = encoderDigests.get(file);
    if (!digest) encoderDigests.set(file, (digest = encoderDigest(sam.pkg.dir, sam.pkg.encoder.file)));
    return digest;
  };
  return (detectorUri, sam, settings = {}) => {
    const key = JSON.stringify([detectorUri, sam.pkg.dir, settings]);
    let session = cache.get(key);
    if (!session) {
      session = Promise.all([localModelDir(detectorUri, storeOptions), digestOf(sam)]).then(
        ([dir, samEncoderSha256]) => DetectorSession.load(dir, { settings, samEncoderSha256 }),
      );
      session.catch(() => cache.delete(key)); // a failed load may succeed on the next attempt
      cache.set(key, session);
    }
    return session;
  };
}
