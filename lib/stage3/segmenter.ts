// The ImageSegmenter the shard runner calls: image bytes in, SA-1B per-image JSON out. A factory
// keeps one SAM session per model and settings for the worker's life (loading ONNX models is
// slow); s3:// model packages are fetched into a local cache first (../sam/local-model.ts).
import { sa1bImageJson } from '../amg/records.ts';
import { AutomaticMaskGenerator, type GeneratorSettings } from '../amg/generator.ts';
import { loadImage } from '../images/image-io.ts';
import { localModelDir } from '../sam/local-model.ts';
import { resolveAmgThresholds, type ThresholdSettings } from '../sam/model-package.ts';
import type { ObjectStoreOptions } from '../object-store.ts';
import { SamSession, type SessionSettings } from '../sam/session.ts';
import type { ImageSegmenter, SegmentedImage } from './shard-runner.ts';

/** The stage3 section of a run config minus its scheduling fields (see lib/run-input.ts). */
export interface SegmenterSettings
  extends
    Partial<Omit<GeneratorSettings, 'maxMaskCoverage' | 'predIouThresh' | 'stabilityScoreThresh'>>,
    ThresholdSettings {
  maxMaskCoverage?: number | null;
  maxImagePixels?: number;
  onnx?: SessionSettings & { intraOpThreads?: number; interOpThreads?: number };
}

export interface SegmenterFactoryOptions {
  storeOptions?: ObjectStoreOptions;
  /** Overrides the config's onnx.intraOpThreads (a worker knows its own cores). */
  intraOpThreads?: number;
}

export type SegmenterFactory = (modelUri: string, settings: SegmenterSettings) => Promise<ImageSegmenter>;

export function createSegmenterFactory(options: SegmenterFactoryOptions = {}): SegmenterFactory {
  const cache = new Map<string, Promise<ImageSegmenter>>();
  return (modelUri, settings) => {
    const key = JSON.stringify([modelUri, settings]);
    let segmenter = cache.get(key);
    if (!segmenter) {
      segmenter = createSegmenter(modelUri, settings, options);
      segmenter.catch(() => cache.delete(key)); // a failed load may succeed on the next attempt
      cache.set(key, segmenter);
    }
    return segmenter;
  };
}

async function createSegmenter(
  modelUri: string,
  settings: SegmenterSettings,
  options: SegmenterFactoryOptions,
): Promise<ImageSegmenter> {
  const dir = await localModelDir(modelUri, options.storeOptions);
  const onnx = {
    ...settings.onnx,
    ...(options.intraOpThreads !== undefined ? { intraOpThreads: options.intraOpThreads } : {}),
  };
  const session = await SamSession.load(dir, onnx);
  const {
    maxImagePixels,
    onnx: _onnx,
    maxMaskCoverage,
    thresholds: _source,
    predIouThresh: _iou,
    stabilityScoreThresh: _stability,
    ...generator
  } = settings;
  // "official" (the config's values) or "model" (the package's calibration, refused when absent).
  const thresholds = resolveAmgThresholds(session.pkg, settings);
  const amg = new AutomaticMaskGenerator(session, {
    ...generator,
    ...thresholds,
    maxMaskCoverage: maxMaskCoverage ?? 1,
  });
  return {
    modelId: session.modelId,
    async segment(bytes, image): Promise<SegmentedImage> {
      const decoded = await loadImage(bytes, { maxPixels: maxImagePixels, name: image.fileName });
      const { masks } = await amg.generate(decoded);
      const info = {
        image_id: image.id,
        width: decoded.width,
        height: decoded.height,
        file_name: image.fileName,
      };
      return { width: decoded.width, height: decoded.height, sa1b: sa1bImageJson(info, masks) };
    },
  };
}
