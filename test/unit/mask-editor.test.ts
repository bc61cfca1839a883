// web/src/mask-editor.ts: a click's candidates are made image-size masks only when shown (a large
// image's full-size masks take long), best first, and cycling, undo and redo show the right one.
import { describe, expect, it } from 'vitest';
import { decodeRle } from '../../lib/rle.ts';
import { MaskEditor } from '../../web/src/mask-editor.ts';

const H = 4;
const W = 5;

/** A candidate whose mask is row `row`, counting how often it is made. */
function candidate(iou: number, row: number, made: number[]) {
  return {
    iou,
    mask: () => {
      made.push(row);
      return Uint8Array.from({ length: H * W }, (_, p) => (Math.floor(p / W) === row ? 1 : 0));
    },
  };
}

const shownRow = (editor: MaskEditor) => decodeRle(editor.state.mask!).indexOf(1) / W;

describe('MaskEditor.decoded', () => {
  it('makes only the shown candidate, the best first, and the others when cycled to, once each', () => {
    const editor = new MaskEditor(H, W);
    const made: number[] = [];
    const prompted = editor.prompt({ click: { x: 1, y: 1, label: 1 } });
    editor.decoded(prompted, [candidate(0.2, 0, made), candidate(0.9, 1, made), candidate(0.5, 2, made)]);
    expect(made).toEqual([1]);
    expect(shownRow(editor)).toBe(1);
    editor.cycleCandidate();
    expect(shownRow(editor)).toBe(2);
    editor.cycleCandidate();
    editor.cycleCandidate();
    expect(shownRow(editor)).toBe(1);
    expect(made).toEqual([1, 2, 0]);
    editor.undo();
    expect(shownRow(editor)).toBe(0);
    editor.redo();
    expect(shownRow(editor)).toBe(1);
    expect(made).toEqual([1, 2, 0]);
  });
});
