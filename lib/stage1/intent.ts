// What a simulated annotator means to label on an image: ground-truth masks, row-major 0/1.
//
// - coco, png: the same human masks the audit reads (../audit/reference.ts), matched by file name.
// - partitions: a folder of human partitions of each photo, `<stem>_<k>.png` 16-bit label maps
//   (BSDS500's groundTruth as ../shared/data/bsds_train keeps them); every label of a partition is
//   one region. Annotator j takes partition j mod n, so several annotators of one image disagree
//   on granularity as BSDS's people did.
import sharp from 'sharp';
import { loadHumanMasks, openReference, type ReferenceSet } from '../audit/reference.ts';
import type { StoreCache } from '../object-store/uri.ts';
import { decodeRle } from '../rle.ts';

export type IntentSource =
  { format: 'coco' | 'png'; uri: string; ignoreValue: number | null } | { format: 'partitions'; uri: string };

export interface Intent {
  /** The masks annotator `annotator` (0, 1, ...) intends on this image; [] when it has none. */
  masksFor(imageName: string, h: number, w: number, annotator: number): Promise<Uint8Array[]>;
}

export async function openIntent(stores: StoreCache, source: IntentSource): Promise<Intent> {
  if (source.format === 'partitions') return PartitionIntent.open(stores, source.uri);
  const reference = await openReference(stores, { ...source });
  return new ReferenceIntent(stores, reference);
}

class ReferenceIntent implements Intent {
  constructor(
    private readonly stores: StoreCache,
    private readonly reference: ReferenceSet,
  ) {}

  async masksFor(imageName: string, h: number, w: number): Promise<Uint8Array[]> {
    if (!this.reference.find(imageName)) return [];
    const image = { key: imageName, w, h };
    const [entry] = await this.reference.entries([image]);
    const human = await loadHumanMasks(this.stores, entry!, image);
    return human.masks.map((m) => decodeRle(m.rle));
  }
}

const PARTITION_NAME = /^(.+)_(\d+)\.png$/i;

class PartitionIntent implements Intent {
  private constructor(
    private readonly stores: StoreCache,
    private readonly root: string,
    /** Photo stem → keys of its partitions, in partition order. */
    private readonly byStem: Map<string, string[]>,
  ) {}

  static async open(stores: StoreCache, uri: string): Promise<PartitionIntent> {
    const store = stores.open(uri);
    const found = new Map<string, { k: number; key: string }[]>();
    for await (const key of store.listKeys('')) {
      const match = PARTITION_NAME.exec(key.slice(key.lastIndexOf('/') + 1));
      if (!match) continue;
      const list = found.get(match[1]!) ?? [];
      list.push({ k: Number(match[2]), key });
      found.set(match[1]!, list);
    }
    const byStem = new Map(
      [...found].map(([stem, list]) => [stem, list.sort((a, b) => a.k - b.k).map((p) => p.key)]),
    );
    if (byStem.size === 0) throw new Error(`${store.uri('')} holds no partitions named <photo>_<k>.png`);
    return new PartitionIntent(stores, store.uri(''), byStem);
  }

  async masksFor(imageName: string, h: number, w: number, annotator: number): Promise<Uint8Array[]> {
    const stem = imageName.replace(/\.[^.]*$/, '');
    const partitions = this.byStem.get(stem);
    if (!partitions) return [];
    const key = partitions[annotator % partitions.length]!;
    const file = this.stores.open(this.root);
    const { data, info } = await sharp(await file.get(key))
      .extractChannel(0)
      .toColourspace('grey16')
      .raw({ depth: 'ushort' })
      .toBuffer({ resolveWithObject: true });
    if (info.width !== w || info.height !== h) {
      throw new Error(`${file.uri(key)} is ${info.width}×${info.height} (w×h), its photo ${w}×${h}`);
    }
    const labels = new Uint16Array(data.buffer, data.byteOffset, data.length / 2);
    const masks = new Map<number, Uint8Array>();
    for (let i = 0; i < labels.length; i++) {
      const label = labels[i]!;
      if (label === 0) continue;
      let mask = masks.get(label);
      if (!mask) masks.set(label, (mask = new Uint8Array(h * w)));
      mask[i] = 1;
    }
    return [...masks.entries()].sort(([a], [b]) => a - b).map(([, mask]) => mask);
  }
}
