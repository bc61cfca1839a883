// The AMG's output records (sam-spec §3 step 8) and SA-1B's per-image JSON (sam-spec §4).
//
// Conventions, as the official code writes them:
// - bbox is XYWH from the *inclusive* mask box: w = x1 − x0, one less than the pixel extent
//   (pycocotools' toBbox would give the extent); a one-pixel mask has w = h = 0.
// - crop_box is XYWH from the *exclusive* crop box, so the whole image is [0, 0, W, H].
// - area is the RLE's pixel count after postprocessing.
// - predicted_iou and stability_score are float32 values; point_coords is float64.
import { compressRle, rleArea, type CocoRle } from '../rle.ts';
import { boxXyxyToXywh } from './crop-boxes.ts';
import type { Box, MaskCandidate } from './types.ts';

/** One record of SamAutomaticMaskGenerator.generate with output_mode="coco_rle". */
export interface AmgRecord {
  segmentation: CocoRle;
  area: number;
  bbox: Box;
  predicted_iou: number;
  point_coords: [[number, number]];
  stability_score: number;
  crop_box: Box;
}

/** An SA-1B annotation: the AMG record plus an id. */
export interface Sa1bAnnotation {
  id: number;
  segmentation: CocoRle;
  bbox: Box;
  area: number;
  predicted_iou: number;
  point_coords: [[number, number]];
  crop_box: Box;
  stability_score: number;
}

export interface Sa1bImageInfo {
  image_id: number;
  width: number;
  height: number;
  file_name: string;
}

/** The JSON file SA-1B ships per image. */
export interface Sa1bImageJson {
  image: Sa1bImageInfo;
  annotations: Sa1bAnnotation[];
}

/** box_xyxy_to_xywh of an inclusive mask box: [x0, y0, x1 − x0, y1 − y0]. */
export function maskBoxToXywh(box: Box): Box {
  return boxXyxyToXywh(box);
}

/** The official record of one mask. */
export function maskRecord(mask: MaskCandidate): AmgRecord {
  return {
    segmentation: compressRle(mask.rle),
    area: rleArea(mask.rle),
    bbox: maskBoxToXywh(mask.box),
    predicted_iou: mask.predictedIou,
    point_coords: [[mask.point[0], mask.point[1]]],
    stability_score: mask.stabilityScore,
    crop_box: boxXyxyToXywh(mask.cropBox),
  };
}

/**
 * SA-1B's per-image JSON for the masks of one image (in AMG output order); annotation ids count
 * up from `firstAnnotationId`.
 */
export function sa1bImageJson(
  image: Sa1bImageInfo,
  masks: readonly MaskCandidate[],
  firstAnnotationId = 1,
): Sa1bImageJson {
  const annotations = masks.map((mask, k): Sa1bAnnotation => {
    const r = maskRecord(mask);
    if (r.segmentation.size[0] !== image.height || r.segmentation.size[1] !== image.width) {
      throw new RangeError(
        `mask ${k} is ${r.segmentation.size.join('×')}, image ${image.file_name} is ${image.height}×${image.width}`,
      );
    }
    return {
      id: firstAnnotationId + k,
      segmentation: r.segmentation,
      bbox: r.bbox,
      area: r.area,
      predicted_iou: r.predicted_iou,
      point_coords: r.point_coords,
      crop_box: r.crop_box,
      stability_score: r.stability_score,
    };
  });
  return { image: { ...image }, annotations };
}
