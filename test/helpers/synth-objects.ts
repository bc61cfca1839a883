// One synthetic image and its ground-truth objects as row-major masks: the intent a simulated
// annotator clicks towards, in unit tests on the reference model.
import { loadImage, type DecodedImage } from '../../lib/images/image-io.ts';
import { decodeRle, decompressRle, type CocoRle } from '../../lib/rle.ts';
import { ANNOTATIONS_KEY, generateSynthDataset } from '../../lib/synth/dataset.ts';

export interface SynthObjects {
  image: DecodedImage;
  /** Row-major h×w 0/1 masks, in the annotation file's order. */
  truths: Uint8Array[];
  areas: number[];
}

/** The first `count` objects of the one image `generateSynthDataset` makes with `seed`. */
export async function synthObjects(seed: number, count: number): Promise<SynthObjects> {
  const files = new Map<string, Uint8Array>();
  await generateSynthDataset({ images: 1, seed, write: async (k, b) => void files.set(k, b) });
  const coco = JSON.parse(new TextDecoder().decode(files.get(ANNOTATIONS_KEY)!)) as {
    images: { file_name: string }[];
    annotations: { segmentation: CocoRle; area: number }[];
  };
  const annotations = coco.annotations.slice(0, count);
  return {
    image: await loadImage(files.get(coco.images[0]!.file_name)!),
    truths: annotations.map((a) => decodeRle(decompressRle(a.segmentation))),
    areas: annotations.map((a) => a.area),
  };
}
