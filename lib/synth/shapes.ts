// Shapes for synthetic objects, and the one rasteriser that turns them into pixels.
//
// Every shape is a set of closed polygons ("paths") filled with the even-odd rule. Curves are
// approximated by many vertices, and a ring is an outer path plus an inner one, so the hole
// falls out of the fill rule. One representation means one rasteriser and exact masks: a pixel
// belongs to a shape when its centre is inside.
import type { Random } from './random.ts';

/** A closed polygon as a flat list of vertices: x0, y0, x1, y1, … */
export type Path = number[];

export type ShapeKind = 'ellipse' | 'polygon' | 'blob' | 'roundedRect' | 'ring';

export const SHAPE_KINDS: readonly ShapeKind[] = ['ellipse', 'polygon', 'blob', 'roundedRect', 'ring'];

/** Where a unit shape goes in the image: centre, radius in pixels, stretch and rotation. */
export interface Placement {
  cx: number;
  cy: number;
  radius: number;
  /** Width / height ratio applied before rotation. */
  aspect: number;
  angle: number;
}

/** A unit shape (about radius 1, centred on 0) of the given kind, with its own random details. */
export function unitShape(kind: ShapeKind, rand: Random): Path[] {
  switch (kind) {
    case 'ellipse':
      return [radialPath(() => 1)];
    case 'polygon':
      return [randomPolygon(rand)];
    case 'blob':
      return [blobPath(rand)];
    case 'roundedRect':
      return [roundedRectPath(rand.uniform(0.6, 1), rand.uniform(0.1, 0.45))];
    case 'ring': {
      // An outer outline with a hole; both follow the same wobble so the band stays even.
      const inner = rand.uniform(0.35, 0.7);
      return [radialPath(() => 1), radialPath(() => inner)];
    }
  }
}

const CURVE_STEPS = 64;

/** A closed path through r(θ)·(cos θ, sin θ) at evenly spaced angles. */
function radialPath(radiusAt: (theta: number) => number, steps = CURVE_STEPS): Path {
  const path: Path = [];
  for (let k = 0; k < steps; k++) {
    const theta = (2 * Math.PI * k) / steps;
    const r = radiusAt(theta);
    path.push(r * Math.cos(theta), r * Math.sin(theta));
  }
  return path;
}

/** 3–8 vertices at sorted random angles and radii: star-convex, so never self-intersecting. */
function randomPolygon(rand: Random): Path {
  const n = rand.int(3, 8);
  const angles = Array.from({ length: n }, (_, k) => ((k + rand.uniform(0.15, 0.85)) * 2 * Math.PI) / n);
  return angles.flatMap((theta) => {
    const r = rand.uniform(0.6, 1);
    return [r * Math.cos(theta), r * Math.sin(theta)];
  });
}

/** A smooth star-convex blob: the radius wobbles with a few random low harmonics. */
function blobPath(rand: Random): Path {
  const harmonics = Array.from({ length: rand.int(2, 5) }, (_, k) => ({
    order: k + 2,
    amplitude: rand.uniform(0, 0.35) / (k + 1),
    phase: rand.uniform(0, 2 * Math.PI),
  }));
  return radialPath((theta) => {
    const wobble = harmonics.reduce((s, h) => s + h.amplitude * Math.sin(h.order * theta + h.phase), 0);
    return Math.max(0.25, 0.85 + wobble);
  });
}

/** A rectangle [-1, 1] × [-height, height] with rounded corners of relative radius `round`. */
function roundedRectPath(height: number, round: number): Path {
  const r = round * Math.min(1, height);
  const corners = [
    [1 - r, height - r, 0],
    [-1 + r, height - r, Math.PI / 2],
    [-1 + r, -height + r, Math.PI],
    [1 - r, -height + r, (3 * Math.PI) / 2],
  ] as const;
  const steps = 8;
  return corners.flatMap(([cx, cy, start]) =>
    Array.from({ length: steps + 1 }, (_, k) => {
      const theta = start + ((Math.PI / 2) * k) / steps;
      return [cx + r * Math.cos(theta), cy + r * Math.sin(theta)];
    }).flat(),
  );
}

/** Scales, stretches, rotates and moves unit paths into image coordinates. */
export function placePaths(paths: Path[], p: Placement): Path[] {
  const sx = p.radius * Math.sqrt(p.aspect);
  const sy = p.radius / Math.sqrt(p.aspect);
  const cos = Math.cos(p.angle);
  const sin = Math.sin(p.angle);
  return paths.map((path) => {
    const out: Path = new Array<number>(path.length);
    for (let i = 0; i < path.length; i += 2) {
      const x = path[i]! * sx;
      const y = path[i + 1]! * sy;
      out[i] = p.cx + x * cos - y * sin;
      out[i + 1] = p.cy + x * sin + y * cos;
    }
    return out;
  });
}

/**
 * Calls `span(y, x0, x1)` for every run of pixels [x0, x1) on row y whose centres lie inside the
 * paths (even-odd rule), clipped to a width × height image. Scanline fill: for each pixel row,
 * intersect its centre line with every edge, sort the crossings, fill between pairs.
 */
export function fillPaths(
  paths: Path[],
  width: number,
  height: number,
  span: (y: number, x0: number, x1: number) => void,
): void {
  let minY = Infinity;
  let maxY = -Infinity;
  for (const path of paths) {
    for (let i = 1; i < path.length; i += 2) {
      minY = Math.min(minY, path[i]!);
      maxY = Math.max(maxY, path[i]!);
    }
  }
  const rowStart = Math.max(0, Math.ceil(minY - 0.5));
  const rowEnd = Math.min(height - 1, Math.floor(maxY - 0.5));
  const crossings: number[] = [];
  for (let y = rowStart; y <= rowEnd; y++) {
    const yc = y + 0.5;
    crossings.length = 0;
    for (const path of paths) addCrossings(path, yc, crossings);
    crossings.sort((a, b) => a - b);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      // Pixels whose centre x + 0.5 lies in [left, right).
      const x0 = Math.max(0, Math.ceil(crossings[k]! - 0.5));
      const x1 = Math.min(width, Math.ceil(crossings[k + 1]! - 0.5));
      if (x1 > x0) span(y, x0, x1);
    }
  }
}

/** x positions where the horizontal line at height yc crosses the edges of one closed path. */
function addCrossings(path: Path, yc: number, out: number[]): void {
  const n = path.length;
  for (let i = 0; i < n; i += 2) {
    const x1 = path[i]!;
    const y1 = path[i + 1]!;
    const x2 = path[(i + 2) % n]!;
    const y2 = path[(i + 3) % n]!;
    // Half-open test so a vertex exactly on the line is counted once.
    if (y1 <= yc !== y2 <= yc) out.push(x1 + ((yc - y1) * (x2 - x1)) / (y2 - y1));
  }
}
