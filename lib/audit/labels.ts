// Label images (one mask image per photo, 0 = background, every other value one object) → one RLE
// per object, plus the "ignore" region that IoU leaves out (GrabCut's unlabelled band is 128).
//
// Mask files are decoded by lib/images/image-io.ts, which hands back RGB. A grey pixel (r = g = b) has
// the label r; a coloured pixel (colour-coded masks) gets a label of its own above 255, so two
// colours never merge. Palette PNGs are expanded to their colours by the decoder, so their labels
// are colours, not palette indices; `ignoreValue` is compared with grey levels only.
import { RleBuilder, type Rle } from '../rle.ts';

export interface LabelMask {
  /** 0..255 for grey pixels, 256 + 0xRRGGBB for coloured ones. */
  label: number;
  rle: Rle;
}

export interface SplitLabels {
  /** One mask per label present, background and ignore excluded, in label order. */
  objects: LabelMask[];
  /** Pixels carrying the ignore value; null when there is no ignore value or no such pixel. */
  ignore: Rle | null;
}

/** Splits an RGB label image (HWC, 3 channels) into object masks and the ignore region. */
export function splitLabels(rgb: Uint8Array, h: number, w: number, ignoreValue: number | null): SplitLabels {
  const builders = new Map<number, RleBuilder>();
  const builder = (label: number) => {
    let b = builders.get(label);
    if (!b) builders.set(label, (b = new RleBuilder(h, w)));
    return b;
  };
  // Walk column-major (the RLE order) and hand each run of one label to that label's builder.
  let runLabel = -1;
  let runStart = 0;
  const flush = (end: number) => {
    if (runLabel > 0) builder(runLabel).add(runStart, end - runStart);
  };
  for (let x = 0, position = 0; x < w; x++) {
    for (let y = 0; y < h; y++, position++) {
      const label = labelAt(rgb, (y * w + x) * 3);
      if (label === runLabel) continue;
      flush(position);
      runLabel = label;
      runStart = position;
    }
  }
  flush(h * w);

  const ignoreLabel = ignoreValue ?? -1;
  const objects = [...builders.entries()]
    .filter(([label]) => label !== ignoreLabel)
    .sort(([a], [b]) => a - b)
    .map(([label, b]) => ({ label, rle: b.finish() }));
  const ignore = builders.get(ignoreLabel)?.finish() ?? null;
  return { objects, ignore };
}

function labelAt(rgb: Uint8Array, i: number): number {
  const r = rgb[i]!;
  const g = rgb[i + 1]!;
  const b = rgb[i + 2]!;
  return r === g && g === b ? r : 256 + ((r << 16) | (g << 8) | b);
}

/** How a label reads in a report: "value 255" or "colour #ff0000". */
export function describeLabel(label: number): string {
  if (label < 256) return `value ${label}`;
  return `colour #${(label - 256).toString(16).padStart(6, '0')}`;
}
