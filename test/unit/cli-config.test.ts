// `sa-engine config validate` through the real CLI entry point, as a user runs it.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { cli } from '../helpers/cli.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('sa-engine config validate', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sae-cli-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints the resolved example config as YAML and exits 0', async () => {
    const result = await cli('config', 'validate', 'examples/run.yaml');
    expect(result.code).toBe(0);
    const resolved = parseYaml(result.stdout) as Record<string, Record<string, unknown>>;
    expect(resolved.run).toBe('demo-laptop');
    expect(resolved.stage3).toMatchObject({ enabled: true, pointsPerSide: 32, predIouThresh: 0.88 });
    expect(resolved.images?.prefix).toBe(`file://${REPO}/examples/synth/images/`);
  });

  it('prints JSON with --json', async () => {
    const result = await cli('config', 'validate', 'examples/run-s3.yaml', '--json');
    expect(result.code).toBe(0);
    const resolved = JSON.parse(result.stdout) as Record<string, Record<string, unknown>>;
    expect(resolved.run).toBe('photos-2025-q3');
    expect(resolved.audit).toMatchObject({ enabled: true, sampleSize: 500 });
  });

  it('lists all three mistakes with their field paths and exits 1', async () => {
    const file = path.join(dir, 'three-mistakes.yaml');
    await writeFile(
      file,
      [
        'run: Demo Run', // not a slug
        'images:',
        '  prefix: file://./images/',
        'output: file://./out/',
        'models:',
        '  sam: ./models/sam',
        'stage3:',
        '  predIouThresh: high', // not a number
        '  pointsPerSid: 16', // misspelled key
        '',
      ].join('\n'),
    );
    const result = await cli('config', 'validate', file);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`${file}: 3 problems:`);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}run: expected a run id: .*, got "Demo Run" \(line 1, column 1\)$/),
      expect.stringMatching(
        /^ {2}stage3\.predIouThresh: expected a number between 0 and 1, got "high" \(line 8, column 3\)$/,
      ),
      expect.stringMatching(
        /^ {2}stage3\.pointsPerSid: unknown key \(did you mean "pointsPerSide"\?\) \(line 9, column 3\)$/,
      ),
    ]);
  });

  it('prints the errors as JSON on stdout with --json', async () => {
    const file = path.join(dir, 'bad.json');
    await writeFile(
      file,
      JSON.stringify({ run: 'demo', images: { prefix: '/i' }, output: '/o', models: {} }),
    );
    const result = await cli('config', 'validate', file, '--json');
    expect(result.code).toBe(1);
    // A one-line JSON file: the position is the column of the `models` key.
    expect(JSON.parse(result.stdout)).toEqual({
      file,
      issues: [
        {
          path: 'models.sam',
          message: expect.stringMatching(/^required: expected s3:\/\/bucket\/prefix/) as unknown,
          line: 1,
          column: 54,
        },
      ],
    });
  });

  it('exits 2 when the file cannot be read', async () => {
    const result = await cli('config', 'validate', path.join(dir, 'missing.yaml'));
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^cannot read run config .*missing\.yaml: ENOENT/);
  });
});
