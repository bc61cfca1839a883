// A synthetic scene: what is in the picture, before any pixel exists.
//
// A scene is an image size, a background, and objects painted back to front. Each object is a
// little tree: a whole, optionally parts (a distinct-coloured region on or sticking out of the
// whole) and subparts inside a part. A click on a subpart is then genuinely ambiguous between
// subpart, part and whole, the ambiguity SAM's three output masks are meant to cover. Every
// node of the tree becomes one annotation; the renderer works out what remains visible.
import type { Random } from './random.ts';
import { placePaths, SHAPE_KINDS, unitShape, type Path, type Placement, type ShapeKind } from './shapes.ts';
import {
  contrastingColour,
  horizonMaterial,
  randomColour,
  randomMaterial,
  shadedMaterial,
  type Material,
  type Rgb,
} from './texture.ts';

export type Level = 'whole' | 'part' | 'subpart';

/** One annotation-to-be. `parent` is an index into Scene.nodes. */
export interface SceneNode {
  level: Level;
  parent?: number;
}

/** Something painted: filled paths in one material, belonging to one node. */
export interface SceneLayer {
  node: number;
  paths: Path[];
  material: Material;
}

/** An object: its layers in paint order (whole, then parts, then subparts), and its shadow. */
export interface SceneObject {
  layers: SceneLayer[];
  /** Shadow offset in pixels and how much light it leaves (0.5 = half as bright). */
  shadow?: { dx: number; dy: number; light: number };
}

/** Camera and light settings applied to the whole picture. */
export interface SceneLook {
  /** Unit direction the light comes from (also sets object shading and shadow direction). */
  lightX: number;
  lightY: number;
  /** Brightness ramp across the frame (0 = even) and corner darkening (0 = none). */
  ramp: number;
  vignette: number;
  /** Weight of each neighbour in the 3-tap blur, 0 to 0.25 (0.25 = [¼ ½ ¼]). */
  blur: number;
  /** Standard deviation of sensor noise in 0–255 units. */
  noise: number;
}

export interface Scene {
  width: number;
  height: number;
  background: Material;
  objects: SceneObject[];
  nodes: SceneNode[];
  look: SceneLook;
  /** Seed for the sensor noise, so rendering is a pure function of the scene. */
  noiseSeed: number;
}

export interface SceneOptions {
  /** Range of the shorter image side in pixels. */
  shortSide: [number, number];
  /** Range of width / height. */
  aspect: [number, number];
  /** Smallest object diameter in pixels. */
  minObjectSize: number;
}

export const DEFAULT_SCENE_OPTIONS: SceneOptions = {
  shortSide: [240, 720],
  aspect: [0.5, 2],
  minObjectSize: 16,
};

/** Builds a random scene. All randomness comes from `rand`. */
export function buildScene(rand: Random, options: SceneOptions = DEFAULT_SCENE_OPTIONS): Scene {
  const { width, height } = imageSize(rand, options);
  const lightAngle = rand.uniform(0, 2 * Math.PI);
  const look: SceneLook = {
    lightX: Math.cos(lightAngle),
    lightY: Math.sin(lightAngle),
    ramp: rand.uniform(0, 0.35),
    vignette: rand.uniform(0, 0.4),
    blur: rand.uniform(0.05, 0.22),
    noise: rand.uniform(1, 6),
  };
  const scene: Scene = {
    width,
    height,
    background: randomBackground(rand, width, height),
    objects: [],
    nodes: [],
    look,
    noiseSeed: rand.seed(),
  };
  const shadows = rand.chance(0.6);
  for (const placement of objectPlacements(rand, width, height, options.minObjectSize)) {
    scene.objects.push(buildObject(rand, scene, placement, shadows));
  }
  return scene;
}

function imageSize(rand: Random, options: SceneOptions): { width: number; height: number } {
  const short = rand.int(options.shortSide[0], options.shortSide[1]);
  const aspect = rand.logUniform(options.aspect[0], options.aspect[1]);
  const long = Math.round(short * (aspect >= 1 ? aspect : 1 / aspect));
  return aspect >= 1 ? { width: long, height: short } : { width: short, height: long };
}

/** A textured backdrop: one surface, or two split by a wavy horizon. */
function randomBackground(rand: Random, width: number, height: number): Material {
  const size = Math.max(width, height);
  // Muted colours: walls, ground and sky are rarely as vivid as the things in front of them.
  const surface = () => randomMaterial(rand, randomColour(rand, 0.45), size * 0.5, width / 2, height / 2);
  if (!rand.chance(0.5)) return surface();
  return horizonMaterial(surface(), surface(), rand.seed(), height * rand.uniform(0.25, 0.75), height * 0.2);
}

/**
 * Where objects go, back to front. Sizes are log-uniform, so small objects are as common per
 * octave as big ones; larger objects tend to be further back; some objects are placed over an
 * earlier one so that occlusion is common, and some run off the edge of the frame.
 */
function objectPlacements(rand: Random, width: number, height: number, minSize: number): Placement[] {
  const short = Math.min(width, height);
  const count = rand.int(3, 6) + Math.round((width * height) / 60000);
  const placements: Placement[] = [];
  for (let k = 0; k < count; k++) {
    const radius = rand.logUniform(minSize, Math.max(minSize * 1.5, 0.7 * short)) / 2;
    const near = placements.length > 0 && rand.chance(0.4) ? rand.pick(placements) : undefined;
    const cx = near ? near.cx + rand.uniform(-1, 1) * near.radius : rand.uniform(0, width);
    const cy = near ? near.cy + rand.uniform(-1, 1) * near.radius : rand.uniform(0, height);
    placements.push({ cx, cy, radius, aspect: rand.logUniform(0.5, 2), angle: rand.uniform(0, Math.PI) });
  }
  // Paint bigger objects first (further back), with jitter so small ones are hidden sometimes.
  const depth = placements.map((p) => p.radius * rand.uniform(0.5, 1.5));
  return placements
    .map((p, i) => ({ p, d: depth[i]! }))
    .sort((a, b) => b.d - a.d)
    .map(({ p }) => p);
}

function buildObject(rand: Random, scene: Scene, placement: Placement, shadows: boolean): SceneObject {
  const layers: SceneLayer[] = [];
  const colour = randomColour(rand);
  const whole = addNode(scene, { level: 'whole' });
  layers.push(makeLayer(rand, scene, whole, rand.pick(SHAPE_KINDS), placement, colour));
  const diameter = 2 * placement.radius;
  const partCount = diameter < 40 ? 0 : rand.pick([0, 1, 1, 1, 2, 2]);
  for (let k = 0; k < partCount; k++) {
    // Most parts sit inside the whole; some stick out of it, like a head or a handle.
    const part = addNode(scene, { level: 'part', parent: whole });
    const partPlacement = childPlacement(rand, placement, rand.uniform(0.25, 0.55), rand.chance(0.25));
    const partColour = contrastingColour(rand, colour);
    layers.push(makeLayer(rand, scene, part, rand.pick(PART_KINDS), partPlacement, partColour));
    if (partPlacement.radius >= 10 && rand.chance(0.6)) {
      const subpart = addNode(scene, { level: 'subpart', parent: part });
      const subPlacement = childPlacement(rand, partPlacement, rand.uniform(0.25, 0.5), false);
      const subColour = contrastingColour(rand, partColour);
      layers.push(makeLayer(rand, scene, subpart, rand.pick(PART_KINDS), subPlacement, subColour));
    }
  }
  const { lightX, lightY } = scene.look;
  const offset = placement.radius * rand.uniform(0.05, 0.15);
  const shadow = shadows
    ? { dx: -lightX * offset, dy: -lightY * offset, light: rand.uniform(0.5, 0.8) }
    : undefined;
  return shadow ? { layers, shadow } : { layers };
}

/** Parts avoid rings: a hole in a small part mostly reads as noise. */
const PART_KINDS: readonly ShapeKind[] = ['ellipse', 'polygon', 'blob', 'roundedRect'];

function addNode(scene: Scene, node: SceneNode): number {
  scene.nodes.push(node);
  return scene.nodes.length - 1;
}

function makeLayer(
  rand: Random,
  scene: Scene,
  node: number,
  kind: ShapeKind,
  placement: Placement,
  colour: Rgb,
): SceneLayer {
  const { cx, cy, radius } = placement;
  const surface = randomMaterial(rand, colour, 2 * radius, cx, cy);
  const { lightX, lightY } = scene.look;
  const material = shadedMaterial(surface, cx, cy, radius, lightX, lightY, rand.uniform(0.05, 0.3));
  return { node, paths: placePaths(unitShape(kind, rand), placement), material };
}

/**
 * A placement for a child shape `scale` times the parent's size: inside the parent near its
 * centre, or (when `protrude`) straddling its outline.
 */
function childPlacement(rand: Random, parent: Placement, scale: number, protrude: boolean): Placement {
  const direction = rand.uniform(0, 2 * Math.PI);
  const distance = protrude ? rand.uniform(0.8, 1.05) : rand.uniform(0, 0.55 - scale * 0.5);
  // Offset in the parent's own frame (stretched and rotated with it).
  const [centre] = placePaths([[distance * Math.cos(direction), distance * Math.sin(direction)]], parent);
  return {
    cx: centre![0]!,
    cy: centre![1]!,
    radius: parent.radius * scale,
    aspect: rand.logUniform(0.6, 1.6),
    angle: rand.uniform(0, Math.PI),
  };
}
