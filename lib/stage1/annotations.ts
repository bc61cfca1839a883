// An accepted stage-1 annotation in storage, one object per mask:
// runs/<run>/stage1/round-<k>/annotations/<image-id>/<submission-id>.json. Written before the
// annotator's submit returns, and written once: a retried submit finds it there.
import type { ObjectStore } from '../object-store.ts';
import type { CocoRle } from '../rle.ts';
import { runLayout } from '../run-layout.ts';

export interface AnnotationRecord {
  run: string;
  round: number;
  imageId: number;
  image: string;
  annotator: string;
  submissionId: string;
  mask: CocoRle;
  seconds: number;
  clicks: number;
  /** The model whose decoder assisted ("name@version"). */
  model: string;
  acceptedAt: string;
  /** A stage-2 pre-filled mask the annotators kept (annotator "detector:<name@version>", 0 s). */
  prefilled?: boolean;
}

/** Stores the record unless its key exists; says which. */
export async function storeAnnotation(
  out: ObjectStore,
  record: AnnotationRecord,
): Promise<{ stored: boolean }> {
  const key = runLayout.stage1Annotation(record.run, record.round, record.imageId, record.submissionId);
  const stored = await out.putIfAbsent(key, JSON.stringify(record) + '\n', {
    contentType: 'application/json',
  });
  return { stored };
}

/** An annotator's word that an image cannot be annotated (blurred, empty, not a photo, ...). */
export interface FlagRecord {
  run: string;
  round: number;
  imageId: number;
  image: string;
  annotator: string;
  reason: string;
}

export async function storeFlag(out: ObjectStore, flag: FlagRecord): Promise<void> {
  const key = runLayout.stage1Flag(flag.run, flag.round, flag.imageId, flag.annotator);
  await out.put(key, JSON.stringify(flag) + '\n', { contentType: 'application/json' });
}
