// Crops of the AMG (sam-spec §3 step 2) and the moves between a crop's frame and the image's:
// the whole image is layer 0; layer i tiles it with 2^i × 2^i overlapping crops.
import { RleBuilder, type Rle } from '../rle.ts';
import type { Box, MaskGrid } from './types.ts';

export interface CropBoxes {
  /** Exclusive XYXY boxes, layer 0 (the whole image) first. */
  cropBoxes: Box[];
  /** The layer of each box (selects its point grid). */
  layerIdxs: number[];
}

/**
 * generate_crop_boxes for an image of imH × imW. For layer i (n = 2^i crops per side):
 *   overlap = int(ratio · min(H, W) · 2/n)
 *   crop    = ceil((overlap·(n − 1) + side) / n)
 *   x0_k    = int((crop_w − overlap)·k),  box = [x0, y0, min(x0 + crop_w, W), min(y0 + crop_h, H)]
 * ordered with x0 in the outer loop and y0 in the inner one, as itertools.product does. (The
 * official comment calls these boxes XYWH; they are XYXY.)
 */
export function generateCropBoxes(
  imH: number,
  imW: number,
  nLayers: number,
  overlapRatio = 512 / 1500,
): CropBoxes {
  const cropBoxes: Box[] = [[0, 0, imW, imH]];
  const layerIdxs = [0];
  const shortSide = Math.min(imH, imW);
  for (let layer = 1; layer <= nLayers; layer++) {
    const nCrops = 2 ** layer;
    // Same float64 order of operations as the Python expression, then int() truncation.
    const overlap = Math.trunc(overlapRatio * shortSide * (2 / nCrops));
    const cropW = cropLength(imW, nCrops, overlap);
    const cropH = cropLength(imH, nCrops, overlap);
    for (let i = 0; i < nCrops; i++) {
      const x0 = Math.trunc((cropW - overlap) * i);
      for (let j = 0; j < nCrops; j++) {
        const y0 = Math.trunc((cropH - overlap) * j);
        cropBoxes.push([x0, y0, Math.min(x0 + cropW, imW), Math.min(y0 + cropH, imH)]);
        layerIdxs.push(layer);
      }
    }
  }
  return { cropBoxes, layerIdxs };
}

/** crop_len: the side of one of n crops that overlap by `overlap` pixels and cover `length`. */
function cropLength(length: number, nCrops: number, overlap: number): number {
  return Math.ceil((overlap * (nCrops - 1) + length) / nCrops);
}

/** uncrop_boxes_xyxy: a box in a crop's frame → the image frame. */
export function uncropBox(box: Box, cropBox: Box): Box {
  const [x0, y0] = cropBox;
  return [box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0];
}

/** uncrop_points on flat [x, y, ...] crop-frame points (float64, like the official code). */
export function uncropPoints(points: Float64Array, cropBox: Box): Float64Array {
  const [x0, y0] = cropBox;
  const out = new Float64Array(points.length);
  for (let p = 0; p < points.length; p += 2) {
    out[p] = points[p]! + x0;
    out[p + 1] = points[p + 1]! + y0;
  }
  return out;
}

/** Exclusive XYXY → [x, y, w, h] (box_xyxy_to_xywh). For inclusive mask boxes, see records.ts. */
export function boxXyxyToXywh(box: Box): Box {
  return [box[0], box[1], box[2] - box[0], box[3] - box[1]];
}

/**
 * uncrop_masks + mask_to_rle_pytorch in one step: the RLE, in the full imH × imW frame, of a
 * crop-frame mask that is zero-padded out to the image. `mask` holds the crop's logits (or 0/1
 * values) and a pixel is on when its value is > `threshold` (0: SAM's binarisation).
 *
 * The padded image is never built: columns left and right of the crop are one background run,
 * and each crop column adds its runs shifted by the crop's corner. Pass the mask's inclusive
 * box (`maskBox`, crop frame) as `bounds` to read only the pixels inside it.
 */
export function uncropMaskToRle(
  mask: MaskGrid<ArrayLike<number>>,
  cropBox: Box,
  imH: number,
  imW: number,
  threshold = 0,
  bounds?: Box,
): Rle {
  const [x0, y0, x1, y1] = cropBox;
  const { h, w, data } = mask;
  if (x1 - x0 !== w || y1 - y0 !== h || x0 < 0 || y0 < 0 || x1 > imW || y1 > imH) {
    throw new RangeError(
      `a ${h}×${w} mask does not fit crop [${cropBox.join(', ')}] of a ${imH}×${imW} image`,
    );
  }
  if (data.length !== h * w) throw new RangeError(`mask has ${data.length} values, expected ${h}×${w}`);
  // Walk the crop column by column, in either layout.
  const [columnStep, rowStep] = mask.order === 'column-major' ? [h, 1] : [1, w];
  // An empty mask's box is [0, 0, 0, 0], which still bounds it (to one pixel).
  const [bx0, by0, bx1, by1] = bounds ?? [0, 0, w - 1, h - 1];
  const runs = new RleBuilder(imH, imW);
  for (let x = bx0; x <= bx1; x++) {
    const columnStart = (x0 + x) * imH + y0; // image position of the crop column's top pixel
    let runStart = -1; // first row of the current foreground run, or −1
    for (let y = by0, i = x * columnStep + by0 * rowStep; y <= by1; y++, i += rowStep) {
      const on = data[i]! > threshold;
      if (on && runStart < 0) runStart = y;
      else if (!on && runStart >= 0) {
        runs.add(columnStart + runStart, y - runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) runs.add(columnStart + runStart, by1 + 1 - runStart);
  }
  return runs.finish();
}
