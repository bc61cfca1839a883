// Comparing one image's automatic masks with its human masks.
//
// Two views, as in the paper's audit and in detection benchmarks:
// - best match: for each human mask, the automatic mask with the highest IoU. The paper's "94% of
//   pairs above 0.90 IoU" is over these pairs. One automatic mask may be the best for several.
// - one-to-one: pairs taken greedily, highest IoU first, each mask used at most once. Recall and
//   precision come from these, so one automatic mask cannot be credited twice.
// IoU is pycocotools' (lib/rle.ts), with automatic masks as detections and human masks as ground
// truth. An ignore region is removed from the automatic masks before IoU (human masks never
// contain it: it is a label of its own).
import { rleIouMatrix, rleMerge, type Rle } from '../rle.ts';

export interface BestMatch {
  /** Highest IoU with any automatic mask; 0 when there are none or none overlap. */
  iou: number;
  /** Index of that automatic mask, or null when the IoU is 0. */
  auto: number | null;
}

export interface Pair {
  human: number;
  auto: number;
  iou: number;
}

export interface ImageMatch {
  /** iou[a][h]: automatic mask a against human mask h (pycocotools' [dt][gt] order). */
  iou: number[][];
  /** One per human mask. */
  best: BestMatch[];
  /** One-to-one pairs with IoU > 0, highest IoU first. */
  pairs: Pair[];
  /** IoU of each human mask's one-to-one partner (0 if none); index = human mask. */
  humanPairIou: number[];
  /** IoU of each automatic mask's one-to-one partner (0 if none); index = automatic mask. */
  autoPairIou: number[];
}

export function matchImage(
  humans: readonly Rle[],
  autos: readonly Rle[],
  ignore: Rle | null = null,
): ImageMatch {
  const cleaned = ignore ? autos.map((a) => removeRegion(a, ignore)) : [...autos];
  const iou = rleIouMatrix(cleaned, [...humans]);
  const best = humans.map((_, h) => bestMatch(iou, h));
  const pairs = greedyPairs(iou, humans.length);
  const humanPairIou = new Array<number>(humans.length).fill(0);
  const autoPairIou = new Array<number>(autos.length).fill(0);
  for (const p of pairs) {
    humanPairIou[p.human] = p.iou;
    autoPairIou[p.auto] = p.iou;
  }
  return { iou, best, pairs, humanPairIou, autoPairIou };
}

function bestMatch(iou: number[][], h: number): BestMatch {
  let best: BestMatch = { iou: 0, auto: null };
  iou.forEach((row, a) => {
    if (row[h]! > best.iou) best = { iou: row[h]!, auto: a };
  });
  return best;
}

/** Greedy one-to-one matching; ties go to the lower human, then the lower automatic index. */
export function greedyPairs(iou: number[][], humanCount: number): Pair[] {
  const candidates: Pair[] = [];
  iou.forEach((row, auto) => {
    for (let human = 0; human < humanCount; human++) {
      if (row[human]! > 0) candidates.push({ human, auto, iou: row[human]! });
    }
  });
  candidates.sort((p, q) => q.iou - p.iou || p.human - q.human || p.auto - q.auto);
  const humanUsed = new Set<number>();
  const autoUsed = new Set<number>();
  const pairs: Pair[] = [];
  for (const c of candidates) {
    if (humanUsed.has(c.human) || autoUsed.has(c.auto)) continue;
    humanUsed.add(c.human);
    autoUsed.add(c.auto);
    pairs.push(c);
  }
  return pairs;
}

/** `mask` without the pixels of `region` (both the same size). */
export function removeRegion(mask: Rle, region: Rle): Rle {
  return rleMerge([mask, complement(region)], true);
}

/** Every pixel flipped: drop the leading background run, or add an empty one. */
export function complement(rle: Rle): Rle {
  const counts = rle.counts[0] === 0 && rle.counts.length > 1 ? rle.counts.slice(1) : [0, ...rle.counts];
  return { size: [rle.size[0], rle.size[1]], counts };
}
