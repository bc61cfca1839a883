// `sa-engine demo --images N` through the real CLI entry point: a count that leaves stage 3 no image
// (its rounds take 6) is refused before anything starts, with the reason.
import { describe, expect, it } from 'vitest';
import { checkDemoImages } from '../../cli/commands/demo.ts';
import { cli } from '../helpers/cli.ts';

describe('sa-engine demo --images', () => {
  it('refuses 6 or fewer images, and a count that is not a whole number, before starting anything', async () => {
    const result = await cli('demo', '--images', '6');
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(
      'sa-engine: --images must be a whole number above 6, got "6": the demo\'s stage-1 and stage-2 ' +
        'rounds take 6 images and stage 3 segments the rest',
    );
    expect(result.stdout).not.toMatch(/dev stack/);
    expect(() => checkDemoImages('7.5')).toThrow(/whole number above 6, got "7.5"/);
    expect(() => checkDemoImages('ten')).toThrow(/got "ten"/);
    expect(checkDemoImages('7')).toBe(7);
  });
});
