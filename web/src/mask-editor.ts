// The state of the mask being made on one image: the prompt (clicks, box), the decoder's candidates,
// the brush and eraser edits on top, and an undo/redo history of all of it. Plain code without the
// DOM, so that it reads (and could be tested) on its own.
import { decodeRle, encodeMask, type Rle } from '../../lib/rle.ts';

export interface Click {
  x: number;
  y: number;
  /** 1 object, 0 background. */
  label: 0 | 1;
}

export interface EditorState {
  clicks: Click[];
  box: [number, number, number, number] | null;
  /**
   * The decoder's candidates for the prompt, best first, as RLE (cheap to keep in history), each
   * encoded when first shown.
   */
  candidates: { iou: number; rle: () => Rle }[];
  candidate: number;
  /** The mask shown: the chosen candidate with the brush edits, or null. */
  mask: Rle | null;
}

const EMPTY: EditorState = { clicks: [], box: null, candidates: [], candidate: 0, mask: null };

export class MaskEditor {
  private history: EditorState[] = [EMPTY];
  private at = 0;
  /** When the first click of the current mask was made (ms), for the per-mask timer. */
  startedAt: number | null = null;
  /** Prompts sent since the mask was started: the "clicks per mask" figure. */
  prompts = 0;

  constructor(
    readonly height: number,
    readonly width: number,
  ) {}

  get state(): EditorState {
    return this.history[this.at]!;
  }

  /** The shown mask as row-major 0/1, or null. */
  maskPixels(): Uint8Array | null {
    return this.state.mask ? decodeRle(this.state.mask) : null;
  }

  /** A prompt change, before its decoder result arrives. */
  prompt(change: { click?: Click; box?: [number, number, number, number] }): EditorState {
    this.startedAt ??= Date.now();
    this.prompts += 1;
    const s = this.state;
    return {
      ...s,
      clicks: change.click ? [...s.clicks, change.click] : s.clicks,
      box: change.box ?? s.box,
    };
  }

  /** The decoder's answer to `prompted`: its candidates sorted by predicted IoU. */
  decoded(prompted: EditorState, candidates: { iou: number; mask: () => Uint8Array }[]): void {
    const sorted = [...candidates].sort((a, b) => b.iou - a.iou);
    const rles = sorted.map((c) => {
      let rle: Rle | undefined;
      return { iou: c.iou, rle: () => (rle ??= encodeMask(c.mask(), this.height, this.width)) };
    });
    this.push({ ...prompted, candidates: rles, candidate: 0, mask: rles[0]?.rle() ?? null });
  }

  /** Shows the next candidate (multimask output of a single click). */
  cycleCandidate(): void {
    const s = this.state;
    if (s.candidates.length < 2) return;
    const candidate = (s.candidate + 1) % s.candidates.length;
    this.push({ ...s, candidate, mask: s.candidates[candidate]!.rle() });
  }

  /** Paints a disc of `radius` pixels with 1 (brush) or 0 (eraser) along a stroke. */
  paint(points: [number, number][], radius: number, value: 0 | 1): void {
    this.startedAt ??= Date.now();
    const pixels = this.maskPixels() ?? new Uint8Array(this.height * this.width);
    for (const [cx, cy] of points) {
      for (let y = Math.max(0, Math.floor(cy - radius)); y <= Math.min(this.height - 1, cy + radius); y++) {
        for (let x = Math.max(0, Math.floor(cx - radius)); x <= Math.min(this.width - 1, cx + radius); x++) {
          if ((x - cx) ** 2 + (y - cy) ** 2 <= radius * radius) pixels[y * this.width + x] = value;
        }
      }
    }
    this.push({ ...this.state, mask: encodeMask(pixels, this.height, this.width) });
  }

  undo(): boolean {
    if (this.at === 0) return false;
    this.at -= 1;
    return true;
  }

  redo(): boolean {
    if (this.at === this.history.length - 1) return false;
    this.at += 1;
    return true;
  }

  /** Starts the next mask (after an accept, or to throw this one away). */
  reset(): void {
    this.history = [EMPTY];
    this.at = 0;
    this.startedAt = null;
    this.prompts = 0;
  }

  /** Seconds from the first click to now: what the accept reports. */
  seconds(now = Date.now()): number {
    return this.startedAt === null ? 0 : (now - this.startedAt) / 1000;
  }

  private push(state: EditorState): void {
    this.history = [...this.history.slice(0, this.at + 1), state];
    this.at = this.history.length - 1;
  }
}
