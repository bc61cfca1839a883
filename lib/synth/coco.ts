// COCO "instances" JSON for synthetic ground truth, with the whole/part/subpart hierarchy kept
// in two extra annotation fields (`level`, `parent_id`) that COCO readers ignore.
import { compressRle, rleArea, rleToBbox, type Bbox, type CocoRle, type Rle } from '../rle.ts';
import type { Level, SceneNode } from './scene.ts';

export interface CocoImage {
  id: number;
  /** Key of the image file relative to the dataset root, e.g. "images/synth-000001.jpg". */
  file_name: string;
  width: number;
  height: number;
}

export interface CocoAnnotation {
  id: number;
  image_id: number;
  category_id: number;
  segmentation: CocoRle;
  area: number;
  /** [x, y, w, h], pycocotools toBbox convention (w, h = pixel extent). */
  bbox: Bbox;
  iscrowd: 0;
  level: Level;
  /** The annotation this part or subpart belongs to. */
  parent_id?: number;
}

export interface CocoDataset {
  info: { description: string; seed: number };
  images: CocoImage[];
  annotations: CocoAnnotation[];
  categories: Array<{ id: number; name: string }>;
}

export const OBJECT_CATEGORY = { id: 1, name: 'object' };

/**
 * Annotations for one image, ids counting up from `firstId`. Nodes whose visible area is below
 * `minArea` (hidden, or almost) are left out together with everything under them.
 */
export function imageAnnotations(
  imageId: number,
  nodes: SceneNode[],
  masks: Rle[],
  firstId: number,
  minArea: number,
): CocoAnnotation[] {
  const ids = new Map<number, number>(); // node index → annotation id
  const annotations: CocoAnnotation[] = [];
  nodes.forEach((node, index) => {
    const mask = masks[index]!;
    const area = rleArea(mask);
    // Parents come before their children, so a dropped parent is already known here.
    const parentId = node.parent === undefined ? undefined : ids.get(node.parent);
    if (area < minArea || (node.parent !== undefined && parentId === undefined)) return;
    const id = firstId + annotations.length;
    ids.set(index, id);
    annotations.push({
      id,
      image_id: imageId,
      category_id: OBJECT_CATEGORY.id,
      segmentation: compressRle(mask),
      area,
      bbox: rleToBbox(mask),
      iscrowd: 0,
      level: node.level,
      ...(parentId === undefined ? {} : { parent_id: parentId }),
    });
  });
  return annotations;
}
