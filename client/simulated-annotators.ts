// Simulated annotators: people stand-ins that use the annotation service's HTTP API exactly as the
// browser tool does, never a back door. Each claims a task, downloads the image's embedding, runs
// the decoder in Node (lib/stage1/simulated-annotator.ts clicks towards its intended masks), submits
// each accepted mask, finishes the image and asks for the next, until no task is left.
import { randomUUID } from 'node:crypto';
import { decodeEmbeddingFile } from '../lib/sam/embedding-file.ts';
import type { SamSession } from '../lib/sam/session.ts';
import type { Intent } from '../lib/stage1/intent.ts';
import { annotateImage, type AnnotatorModel } from '../lib/stage1/simulated-annotator.ts';
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
}

export interface SimulatedAnnotatorResult {
  images: number;
  masks: number;
  skipped: number;
}

export async function runSimulatedAnnotator(
  opts: SimulatedAnnotatorOptions,
): Promise<SimulatedAnnotatorResult> {
  const result: SimulatedAnnotatorResult = { images: 0, masks: 0, skipped: 0 };
  for (;;) {
    const task = await opts.api.next();
    if (!task) {
      if (await opts.stop()) return result;
      await new Promise((resolve) => setTimeout(resolve, opts.idleMs ?? 1000));
      continue;
    }
    const truths = await opts.intent.masksFor(task.imageName, task.height, task.width, opts.index);
    if (truths.length === 0) {
      // Nothing this annotator means to label here: give it back for someone else.
      await opts.api.skip(task.task);
      result.skipped += 1;
      continue;
    }
    const file = await opts.api.embedding(task.task);
    const { header, data } = decodeEmbeddingFile(file, `${opts.api.baseUrl} task ${task.task}`);
    const session = await opts.sessionFor(task.model);
    const embedding = session.embeddingFrom(`task ${task.task}`, header, data);
    const masks = await annotateImage(session, embedding, truths, task.height, task.width, opts.model);
    for (const mask of masks.slice(0, opts.maxMasksPerImage)) {
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
