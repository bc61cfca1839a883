// The committed reference detector (models/sae-det) on the committed SAM (models/sae-ref):
// loading checks, detection on a held-out synthetic scene, and stage 2's pre-filled masks.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRle } from '../../lib/rle.ts';
import { DetectorSession } from '../../lib/detector/detector.ts';
import {
  DetectorPackageError,
  encoderDigest,
  readDetectorPackage,
} from '../../lib/detector/detector-package.ts';
import type { ImageEmbedding } from '../../lib/sam/session.ts';
import { SamSession } from '../../lib/sam/session.ts';
import { openObjectStore } from '../../lib/object-store.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { embeddingFileOf } from '../../lib/sam/embedding-file.ts';
import { prefillMasks } from '../../lib/stage2/prefill.ts';
import { prefillImages, readPrefill } from '../../lib/stage2/prefill-store.ts';
import { hash32, Random } from '../../lib/synth/random.ts';
import { renderScene } from '../../lib/synth/render.ts';
import { buildScene } from '../../lib/synth/scene.ts';

const samDir = resolve(import.meta.dirname, '../../models/sae-ref');
const detectorDir = resolve(import.meta.dirname, '../../models/sae-det');

let sam: SamSession;
let embedding: ImageEmbedding;
let scratch: string;

beforeAll(async () => {
  sam = await SamSession.load(samDir, { intraOpThreads: 1 });
  // A held-out scene (seed 7777, as the card's figures): never trained on.
  const scene = renderScene(buildScene(new Random(hash32(7777, 0))));
  embedding = await sam.embed({ data: scene.rgb, width: scene.width, height: scene.height, channels: 3 });
  scratch = await mkdtemp(join(tmpdir(), 'sae-det-'));
}, 60_000);

afterAll(async () => {
  await sam?.release();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A copy of the detector package with model.json changed by `edit`. */
async function packageWith(edit: (json: Record<string, unknown>) => void): Promise<string> {
  const dir = await mkdtemp(join(scratch, 'pkg-'));
  await cp(detectorDir, dir, { recursive: true });
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
  edit(json);
  await writeFile(join(dir, 'model.json'), JSON.stringify(json));
  return dir;
}

describe('models/sae-det', () => {
  it('was trained on the committed SAM encoder', async () => {
    const pkg = await readDetectorPackage(detectorDir);
    expect(pkg.sam.encoderOnnxSha256).toBe(await encoderDigest(samDir, sam.pkg.encoder.file));
    expect(pkg.grid).toBe(64);
  });

  it('finds boxes inside the image, best first, at most maxDetections', async () => {
    const detector = await DetectorSession.load(detectorDir, {
      samEncoderSha256: await encoderDigest(samDir, sam.pkg.encoder.file),
    });
    const [h, w] = embedding.originalSize;
    const found = await detector.detect(embedding, { scoreThreshold: 0.05, maxDetections: 20 });
    expect(found.length).toBeGreaterThan(0);
    expect(found.length).toBeLessThanOrEqual(20);
    for (const { box, score } of found) {
      expect(box[0]).toBeGreaterThanOrEqual(0);
      expect(box[2]).toBeLessThanOrEqual(w);
      expect(box[3]).toBeLessThanOrEqual(h);
      expect(box[2] - box[0]).toBeGreaterThanOrEqual(1);
      expect(score).toBeGreaterThanOrEqual(0.05);
    }
    expect(found.map((d) => d.score)).toEqual([...found.map((d) => d.score)].sort((a, b) => b - a));
  });

  it('pre-fills masks from its boxes: each from one detection, confident by both filters', async () => {
    const detector = await DetectorSession.load(detectorDir);
    const settings = {
      prompt: 'centre-point' as const,
      predIouThresh: 0,
      stabilityScoreThresh: 0.3,
      boxNmsThresh: 0.7,
      batchSize: 8,
    };
    const { detections, masks } = await prefillMasks(sam, detector, embedding, settings);
    expect(masks.length).toBeGreaterThan(0);
    expect(masks.length).toBeLessThanOrEqual(3 * detections.length); // a point gives 3 masks
    for (const mask of masks) {
      expect(detections).toContain(mask.detection);
      expect(mask.stabilityScore).toBeGreaterThanOrEqual(0.3);
      const [h, w] = mask.rle.size;
      expect([h, w]).toEqual(embedding.originalSize);
      expect(decodeRle(mask.rle).some((v) => v === 1)).toBe(true);
    }
    // sae-ref v4 never learnt box prompts (its card): its box masks are empty and none passes.
    // When the reference SAM learns boxes, this says so and the default prompt can be the box.
    const boxes = await prefillMasks(sam, detector, embedding, { ...settings, prompt: 'box' });
    expect(boxes.detections.length).toBe(detections.length);
    expect(boxes.masks).toEqual([]);
    const strict = await prefillMasks(sam, detector, embedding, { ...settings, stabilityScoreThresh: 1.01 });
    expect(strict.masks).toEqual([]); // nothing passes an impossible filter: the filter is applied
  });

  it('refuses another SAM encoder, a model.json that does not match the graph, and a broken graph', async () => {
    await expect(DetectorSession.load(detectorDir, { samEncoderSha256: 'f'.repeat(64) })).rejects.toThrow(
      /trained on the embeddings of .*retrain it/,
    );
    const renamed = await packageWith((json) => {
      (json.outputs as { name: string }[])[0]!.name = 'objectness';
    });
    await expect(DetectorSession.load(renamed)).rejects.toThrow(/does not match its model.json/);
    const notDetector = await packageWith((json) => {
      json.format = 'sa-engine-model/1';
    });
    await expect(DetectorSession.load(notDetector)).rejects.toThrow(DetectorPackageError);
    const broken = await packageWith(() => {});
    await writeFile(join(broken, 'detector.onnx'), 'not onnx');
    await expect(DetectorSession.load(broken)).rejects.toThrow(/not a loadable ONNX model/);
  });

  it("stores each image's pre-fill once, from its stored embedding, and reports images it cannot do", async () => {
    const detector = await DetectorSession.load(detectorDir);
    const out = openObjectStore(`file://${scratch}/store`);
    await out.put(runLayout.embedding('run', 0), embeddingFileOf(sam.modelId, embedding, 'float16'));
    await out.put(runLayout.embedding('run', 2), Buffer.from('not an embedding'));
    const settings = {
      prompt: 'centre-point' as const,
      predIouThresh: 0,
      stabilityScoreThresh: 0.3,
      boxNmsThresh: 0.7,
      batchSize: 8,
    };
    const opts = { runId: 'run', imageIds: [0, 1, 2], settings };
    const first = await prefillImages(out, sam, detector, opts);
    expect(first).toMatchObject({ prefilled: 1, reused: 0 });
    expect(first.failed.map((f) => f.id)).toEqual([1, 2]);
    expect(first.failed[0]!.error).toMatch(/no embedding at/);
    const file = await readPrefill(out, runLayout.stage2Prefill('run', 0));
    expect(file).toMatchObject({ image: 0, sam: sam.modelId, detector: detector.modelId });
    expect(file!.size).toEqual(embedding.originalSize);
    expect(file!.masks.length).toBe(first.masks);
    expect(file!.masks.length).toBeGreaterThan(0);

    const again = await prefillImages(out, sam, detector, { ...opts, imageIds: [0] });
    expect(again).toMatchObject({ prefilled: 0, reused: 1, masks: first.masks });
    // A damaged file is made again rather than trusted.
    await out.put(runLayout.stage2Prefill('run', 0), Buffer.from('{"format": "sa-engine-prefill/1"'));
    expect(await prefillImages(out, sam, detector, { ...opts, imageIds: [0] })).toMatchObject({
      prefilled: 1,
    });
  });
});
