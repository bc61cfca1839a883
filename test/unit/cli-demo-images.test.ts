// `sa-engine demo --images N` through the real CLI entry point: a count that leaves stage 3 no image
// (its rounds take 6) is refused before anything starts, with the reason. And the demo's run config:
// a model registry of its own per run, so a demo never starts from a version an earlier one promoted.
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkDemoImages, demoConfig } from '../../cli/commands/demo.ts';
import { registryUri } from '../../lib/models/registry.ts';
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

describe('the demo run config', () => {
  it("keeps each run's model registry apart, under the demo output", () => {
    const config = demoConfig('/tmp/demo/images', '/tmp/demo/out', {
      pointsPerSide: 16,
      calibration: { predIouThresh: 0.3, stabilityScoreThresh: 0.5 },
      annotate: false,
    });
    expect(config.run).toMatch(/^demo-\d{8}-\d{6}$/);
    expect(registryUri(config)).toBe(pathToFileURL(`/tmp/demo/out/registries/${config.run}`).href);
  });
});
