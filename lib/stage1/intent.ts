// What a simulated annotator means to label on an image: ground-truth masks, row-major 0/1.
//
// - coco, png: the same human masks the audit reads (../audit/reference.ts), matched by file name.
// - partitions: a folder of human partitions of each photo, `<stem>_<k>.png` 16-bit label maps
//   (BSDS500's groundTruth as ../shared/data/bsds_train keeps them); every label of a partition is
//   one region. Annotator j takes partition j mod n, so several annotators of one image disagree
//   on granularity as BSDS's people did.
import sharp from 'sharp';
import { loadHumanMasks, openReference, type ReferenceEntry, type ReferenceSet } from '../audit/reference.ts';
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

/**
 * Reference images whose entries one read brings in, and how many are kept: a COCO reference
 * streams its whole file on each `entries` call, so asking for one image per task would read an
 * N-image file N times.
 */
export const ENTRIES_PER_READ = 1024;
const ENTRIES_KEPT = 4 * ENTRIES_PER_READ;

class ReferenceIntent implements Intent {
  /** Reference name → its entry, oldest read first (dropped first). */
  private readonly kept = new Map<string, ReferenceEntry>();
  private readonly order: string[];
  private readonly position: Map<string, number>;
  /** Blocks (by first position) with malformed masks somewhere: their images are read one by one. */
  private readonly readSingly = new Set<number>();
  /** The read under way: one at a time, since a concurrent caller's image is often in it. */
  private reading: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly stores: StoreCache,
    private readonly reference: ReferenceSet,
  ) {
    this.order = reference.names();
    this.position = new Map(this.order.map((name, i) => [name, i]));
  }

  async masksFor(imageName: string, h: number, w: number): Promise<Uint8Array[]> {
    const name = this.reference.find(imageName);
    if (!name) return [];
    const human = await loadHumanMasks(this.stores, await this.entryOf(name), { key: imageName, w, h });
    return human.masks.map((m) => decodeRle(m.rle));
  }

  private entryOf(name: string): Promise<ReferenceEntry> {
    const kept = this.kept.get(name);
    if (kept) return Promise.resolve(kept);
    const turn = this.reading.then(() => this.read(name));
    this.reading = turn.catch(() => undefined);
    return turn;
  }

  /**
   * The entry of a reference image, read with the others of its block of ENTRIES_PER_READ in the
   * reference's order that are not kept.
   */
  private async read(name: string): Promise<ReferenceEntry> {
    const kept = this.kept.get(name);
    if (kept) return kept;
    const start = this.position.get(name)! - (this.position.get(name)! % ENTRIES_PER_READ);
    const block = this.order.slice(start, start + ENTRIES_PER_READ);
    const names = [name, ...block.filter((other) => other !== name && !this.kept.has(other))];
    const readAlone = async () => (await this.reference.entries([{ key: name }]))[0]!;
    if (this.readSingly.has(start)) return readAlone();
    let entries: ReferenceEntry[];
    try {
      entries = await this.reference.entries(names.map((key) => ({ key })));
    } catch {
      // Another image's malformed masks must not fail this one: read it alone (its own error, if any).
      this.readSingly.add(start);
      return readAlone();
    }
    for (const [i, key] of names.entries()) this.kept.set(key, entries[i]!);
    for (const oldest of this.kept.keys()) {
      if (this.kept.size <= ENTRIES_KEPT) break;
      this.kept.delete(oldest);
    }
    return entries[0]!;
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
