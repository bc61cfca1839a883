// `npm run bench:amg-parity`: our AMG against the official segment-anything AMG on the same weights
// and images (sam-spec §6): mask counts, and the IoU of matched masks. Masks are joined on their
// prompt (crop_box, point_coords), then matched by IoU among that prompt's masks; what is left is
// matched greedily at IoU ≥ 0.5.
//
//   npm run bench:amg-parity -- [--synthetic N] [--real N] [--points-per-side N] [--crop-n-layers N]
import type { Sa1bAnnotation } from '../lib/amg/records.ts';
import { decompressRle, rleArea, rleIou, type Rle } from '../lib/rle.ts';
import { join } from 'node:path';
import { benchImages, parseBenchArgs, runOfficial, runOurs } from './amg-common.ts';

export interface ImageParity {
  ours: number;
  official: number;
  matchedIous: number[];
}

export function compareImage(ours: Sa1bAnnotation[], official: Sa1bAnnotation[]): ImageParity {
  const rles = (list: Sa1bAnnotation[]) => list.map((a) => decompressRle(a.segmentation));
  const ourRles = rles(ours);
  const officialRles = rles(official);
  const usedOurs = new Set<number>();
  const matchedIous: number[] = [];
  const unmatched: number[] = [];
  // Pass 1: same prompt, best IoU among its masks.
  official.forEach((rec, j) => {
    const best = bestMatch(officialRles[j]!, ourRles, (i) => !usedOurs.has(i) && samePrompt(ours[i]!, rec));
    if (best) {
      usedOurs.add(best.index);
      matchedIous.push(best.iou);
    } else unmatched.push(j);
  });
  // Pass 2: any remaining mask at IoU ≥ 0.5 (NMS may keep a different duplicate of the same object).
  for (const j of unmatched) {
    const best = bestMatch(officialRles[j]!, ourRles, (i) => !usedOurs.has(i));
    if (best && best.iou >= 0.5) {
      usedOurs.add(best.index);
      matchedIous.push(best.iou);
    }
  }
  return { ours: ours.length, official: official.length, matchedIous };
}

function samePrompt(a: Sa1bAnnotation, b: Sa1bAnnotation): boolean {
  const close = (x: number, y: number) => Math.abs(x - y) < 1e-6;
  return (
    a.crop_box.every((v, k) => close(v, b.crop_box[k]!)) &&
    a.point_coords[0].every((v, k) => close(v, b.point_coords[0][k]!))
  );
}

function bestMatch(
  target: Rle,
  candidates: Rle[],
  allowed: (i: number) => boolean,
): { index: number; iou: number } | undefined {
  let best: { index: number; iou: number } | undefined;
  candidates.forEach((rle, i) => {
    if (!allowed(i)) return;
    const iou = maskIou(rle, target);
    if (!best || iou > best.iou) best = { index: i, iou };
  });
  return best;
}

/** IoU, with two empty masks counted as identical (pycocotools says 0 there). */
function maskIou(a: Rle, b: Rle): number {
  return rleArea(a) === 0 && rleArea(b) === 0 ? 1 : rleIou(a, b);
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const { synthetic, real, settings, packageDir } = parseBenchArgs({ synthetic: 10, real: 5 });
  const paths = await benchImages(synthetic, real);
  const official = await runOfficial(paths, settings, join(packageDir, 'checkpoint.pt'));
  const ours = await runOurs(paths, settings, packageDir);
  let oursTotal = 0;
  let officialTotal = 0;
  const allIous: number[] = [];
  paths.forEach((path, i) => {
    const parity = compareImage(ours.annotations[i]!, official.records[i]!);
    oursTotal += parity.ours;
    officialTotal += parity.official;
    allIous.push(...parity.matchedIous);
    console.log(
      `${path}: ours ${parity.ours}, official ${parity.official}, matched ${parity.matchedIous.length}, median IoU ${median(parity.matchedIous).toFixed(4)}`,
    );
  });
  const countDiff = officialTotal === 0 ? 0 : (oursTotal - officialTotal) / officialTotal;
  console.log(`settings ${JSON.stringify(settings)}, ${paths.length} images`);
  console.log(`masks: ours ${oursTotal}, official ${officialTotal} (${(100 * countDiff).toFixed(2)}%)`);
  console.log(
    `matched ${allIous.length}; IoU median ${median(allIous).toFixed(4)}, ≥0.95: ${share(allIous, 0.95)}, ≥0.99: ${share(allIous, 0.99)}`,
  );
}

function share(values: number[], at: number): string {
  return values.length
    ? `${((100 * values.filter((v) => v >= at).length) / values.length).toFixed(1)}%`
    : 'n/a';
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
