// Simulated annotators: people stand-ins that use the annotation service's HTTP API exactly as the
// browser tool does, never a back door. Each claims a task, downloads the image's embedding, runs
// the decoder in Node (lib/stage1/simulated-annotator.ts clicks towards its intended masks), submits
// each accepted mask, finishes the image and asks for the next, until no task is left.
//
// On a stage-2 task the image arrives with pre-filled masks: the annotator deletes those that match
// none of the objects it means to label (IoU < 0.5 with each), and labels only the objects no kept
// pre-filled mask covers (lib/stage2/coverage.ts), as the paper's stage-2 annotators did.
import { randomUUID } from 'node:crypto';
import { decodeRle, decompressRle } from '../lib/rle.ts';
import { decodeEmbeddingFile } from '../lib/sam/embedding-file.ts';
import type { SamSession } from '../lib/sam/session.ts';
import type { Intent } from '../lib/stage1/intent.ts';
import { annotateImage, type AnnotatorModel } from '../lib/stage1/simulated-annotator.ts';
import { COVERED_IOU, reviewPrefilled } from '../lib/stage2/coverage.ts';
import type { TaskResponse } from '../service/annotation-service.ts';
import { AnnotationApi } from './annotation-api.ts';

export interface SimulatedAnnotatorOptions {
  api: AnnotationApi;
  /** Which of the intent's views this annotator has (partitions: j mod n). */
  index: number;
  /** The SAM session of the model a task names (a retrain may promote a new one between rounds). */
  sessionFor: (modelId: string) => Promise<SamSession>;
  intent: Intent;
  model: AnnotatorModel;
  /** At most this many masks per image (the first intended objects that are big enough). */
  maxMasksPerImage: number;
  /** When no task is free: wait this long and ask again, until `stop` says so. */
  idleMs?: number;
  /** Asked when no task is free: true ends the annotator's work. */
  stop: () => boolean | Promise<boolean>;
  onMask?: (seconds: number) => void;
  /** Tasks left for a person: skipped, so the service never offers them to this annotator again. */
  leave?: (task: TaskResponse) => boolean;
}

export interface SimulatedAnnotatorResult {
  images: number;
  masks: number;
  skipped: number;
  /** Pre-filled masks deleted. */
  rejected: number;
}

export async function runSimulatedAnnotator(
  opts: SimulatedAnnotatorOptions,
): Promise<SimulatedAnnotatorResult> {
  const result: SimulatedAnnotatorResult = { images: 0, masks: 0, skipped: 0, rejected: 0 };
  for (;;) {
    const task = await opts.api.next();
    if (!task) {
      if (await opts.stop()) return result;
      await new Promise((resolve) => setTimeout(resolve, opts.idleMs ?? 1000));
      continue;
    }
    if (opts.leave?.(task)) {
      await opts.api.skip(task.task);
      result.skipped += 1;
      continue;
    }
    const truths = await opts.intent.masksFor(task.imageName, task.height, task.width, opts.index);
    if (truths.length === 0) {
      // Nothing this annotator means to label here: give it back for someone else.
      await opts.api.skip(task.task);
      result.skipped += 1;
      continue;
    }
    const wanted = task.prefill ? await reviewPrefill(opts.api, task, truths, result) : truths;
    const file = await opts.api.embedding(task.task);
    const { header, data } = decodeEmbeddingFile(file, `${opts.api.baseUrl} task ${task.task}`);
    const session = await opts.sessionFor(task.model);
    const embedding = session.embeddingFrom(`task ${task.task}`, header, data);
    const masks = await annotateImage(
      session,
      embedding,
      wanted,
      task.height,
      task.width,
      opts.model,
      opts.maxMasksPerImage,
    );
    for (const mask of masks) {
      await opts.api.submit(task.task, {
        submissionId: randomUUID(),
        mask: mask.mask,
        seconds: mask.seconds,
        clicks: mask.clicks,
      });
      result.masks += 1;
      opts.onMask?.(mask.seconds);
    }
    await opts.api.finish(task.task);
    result.images += 1;
  }
}

/**
 * Deletes the pre-filled masks that match none of the intended objects; returns the intended
 * objects that no kept pre-filled mask covers, which are what is left to label.
 */
async function reviewPrefill(
  api: AnnotationApi,
  task: TaskResponse,
  truths: Uint8Array[],
  result: SimulatedAnnotatorResult,
): Promise<Uint8Array[]> {
  const prefill = await api.prefill(task.task);
  const alreadyDeleted = new Set(task.prefill?.rejected ?? []);
  const live = prefill.masks.map((m, index) => ({ index, pixels: decodeRle(decompressRle(m.segmentation)) }));
  const shown = live.filter(({ index }) => !alreadyDeleted.has(index));
  const review = reviewPrefilled(
    truths,
    shown.map((m) => m.pixels),
  );
  for (const i of review.reject) {
    const reason = `matches none of the objects on this image (IoU < ${COVERED_IOU})`;
    await api.rejectPrefill(task.task, shown[i]!.index, reason);
    result.rejected += 1;
  }
  return review.left;
}
