// The run config: defaults, every error at once with its field path, locations, and the examples.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  RUN_CONFIG_DEFAULTS,
  RunConfigError,
  RunConfigReadError,
  RunConfigSchema,
  SA1B_PAPER_AMG,
  durationToMs,
  formatRunConfig,
  formatRunConfigIssue,
  loadRunConfig,
  loadRunConfigFile,
  resolveLocation,
  type RunConfig,
  type RunConfigIssue,
} from '../../lib/run-config.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BASE = '/srv/configs';

const MINIMAL = `
run: demo
images:
  prefix: s3://photos/raw/
output: s3://datasets/out/
models:
  sam: s3://datasets/models/sam/v1/
`;

/** The minimal config with `extra` YAML appended (top-level sections). */
function load(extra = '', fileName = `${BASE}/run.yaml`): RunConfig {
  return loadRunConfig(MINIMAL + extra, fileName);
}

/** The issues `loadRunConfig` throws for `text`; fails the test when it does not throw. */
function issuesOf(text: string, fileName = `${BASE}/run.yaml`): RunConfigIssue[] {
  try {
    loadRunConfig(text, fileName);
  } catch (error) {
    if (error instanceof RunConfigError) return [...error.issues];
    throw error;
  }
  throw new Error('expected the config to be rejected');
}

function issueAt(issues: RunConfigIssue[], at: string): RunConfigIssue {
  const found = issues.find((issue) => issue.path === at);
  if (!found) throw new Error(`no issue at ${at}; got ${JSON.stringify(issues, null, 2)}`);
  return found;
}

describe('defaults', () => {
  it('fills every section of a minimal config with the official SAM and paper defaults', () => {
    const config = load();
    expect(config.stage3).toMatchObject({
      enabled: true,
      pointsPerSide: 32,
      pointsPerBatch: 64,
      predIouThresh: 0.88,
      stabilityScoreThresh: 0.95,
      stabilityScoreOffset: 1.0,
      boxNmsThresh: 0.7,
      cropNLayers: 0,
      cropNmsThresh: 0.7,
      cropOverlapRatio: 512 / 1500,
      cropNPointsDownscaleFactor: 1,
      minMaskRegionArea: 0,
      maxMaskCoverage: null,
      dropSmallMasks: false,
      shardSize: 1000,
      maxConcurrentShards: 4,
      batchImages: 8,
      onnx: { executionProvider: 'cpu', intraOpThreads: 0, interOpThreads: 0 },
    });
    expect(config.temporal).toEqual({ address: '127.0.0.1:7233', namespace: 'default', tls: null });
    expect(config.images).toEqual({
      prefix: 's3://photos/raw/',
      extensions: ['jpg', 'jpeg', 'png', 'bmp', 'webp', 'tif', 'tiff'],
    });
    expect(config.audit).toMatchObject({ enabled: false, reference: null, sampleSize: 500 });
    expect(config.release).toEqual({ enabled: false, shortestSide: 1500 });
    expect(config.models).toEqual({ detector: null, sam: 's3://datasets/models/sam/v1/', registry: null });
  });

  it('exports the same defaults it applies', () => {
    const config = load();
    expect(config.stage3).toEqual(RUN_CONFIG_DEFAULTS.stage3);
    expect(config.audit).toEqual(RUN_CONFIG_DEFAULTS.audit);
    expect(config.temporal).toEqual(RUN_CONFIG_DEFAULTS.temporal);
    expect(config.storage).toEqual(RUN_CONFIG_DEFAULTS.storage);
  });

  it('keeps what the file sets and fills the rest of that section', () => {
    const config = load('stage3:\n  predIouThresh: 0.8\n  onnx: { executionProvider: cuda }\n');
    expect(config.stage3.predIouThresh).toBe(0.8);
    expect(config.stage3.stabilityScoreThresh).toBe(0.95);
    expect(config.stage3.onnx).toEqual({ executionProvider: 'cuda', intraOpThreads: 0, interOpThreads: 0 });
  });

  it('accepts the paper settings for SA-1B', () => {
    const config = loadRunConfig(
      JSON.stringify({ ...parseYaml(MINIMAL), stage3: SA1B_PAPER_AMG }),
      `${BASE}/run.json`,
    );
    expect(config.stage3).toMatchObject(SA1B_PAPER_AMG);
  });

  it('prints a resolved config that validates again to the same config', () => {
    const config = load('audit: { sampleSize: 7 }\nstage3: { cropOverlapRatio: 512/1500 }\n');
    for (const format of ['yaml', 'json'] as const) {
      const again = loadRunConfig(formatRunConfig(config, format), `/elsewhere/resolved.${format}`);
      expect(again).toEqual(config);
    }
  });
});

describe('errors', () => {
  it('reports three mistakes at once, each with its field path and what was expected', () => {
    const issues = issuesOf(`
run: demo
images:
  prefix: s3://photos/raw/
  extensions: [jpg, png, "a/b"]
output: s3://datasets/out/
models:
  sam: s3://datasets/models/sam/
stage3:
  predIouThresh: high
  pointsPerSid: 16
`);
    expect(issues.map((issue) => issue.path)).toEqual([
      'images.extensions[2]',
      'stage3.predIouThresh',
      'stage3.pointsPerSid',
    ]);
    expect(issueAt(issues, 'stage3.predIouThresh').message).toBe(
      'expected a number between 0 and 1, got "high"',
    );
    expect(issueAt(issues, 'images.extensions[2]').message).toBe(
      'expected a file extension such as "jpg", got "a/b"',
    );
    expect(issueAt(issues, 'stage3.pointsPerSid').message).toBe(
      'unknown key (did you mean "pointsPerSide"?)',
    );
  });

  it('gives the line and column of each field', () => {
    const issues = issuesOf(`${MINIMAL}stage3:\n  predIouThresh: 1.5\n`);
    // MINIMAL starts with a blank line and has 6 more, so `stage3:` is line 8.
    expect(issueAt(issues, 'stage3.predIouThresh')).toMatchObject({ line: 9, column: 3 });
    expect(formatRunConfigIssue(issueAt(issues, 'stage3.predIouThresh'))).toBe(
      'stage3.predIouThresh: expected a number between 0 and 1, got 1.5 (line 9, column 3)',
    );
  });

  it("refuses more concurrent shards than Temporal's pending-children limit", () => {
    const issues = issuesOf(`${MINIMAL}stage3:\n  maxConcurrentShards: 2001\n`);
    expect(formatRunConfigIssue(issueAt(issues, 'stage3.maxConcurrentShards'))).toMatch(
      /^stage3\.maxConcurrentShards: expected a whole number from 1 to 2000, got 2001/,
    );
  });

  it('names missing required fields', () => {
    const issues = issuesOf('run: demo\n');
    expect(issues.map((issue) => issue.path)).toEqual(['images', 'output', 'models']);
    expect(issueAt(issues, 'output').message).toMatch(/^required: expected s3:\/\/bucket\/prefix/);
  });

  it('rejects misspelled and unknown keys everywhere, suggesting the right one', () => {
    const issues = issuesOf(
      `${MINIMAL}stage_3: {}\nstage3: { points_per_side: 16 }\ntemporal: { namespce: q }\nfoo: 1\n`,
    );
    expect(issueAt(issues, 'stage_3').message).toBe('unknown key (did you mean "stage3"?)');
    expect(issueAt(issues, 'stage3.points_per_side').message).toBe(
      'unknown key (did you mean "pointsPerSide"?)',
    );
    expect(issueAt(issues, 'temporal.namespce').message).toBe('unknown key (did you mean "namespace"?)');
    expect(issueAt(issues, 'foo').message).toMatch(/^unknown key; expected one of: run, images, output/);
  });

  it('refuses credentials in the file and says where they belong', () => {
    const issues = issuesOf(`${MINIMAL}storage:\n  s3: { accessKeyId: AKIA, secretAccessKey: x }\n`);
    expect(issues.map((issue) => issue.path)).toEqual([
      'storage.s3.accessKeyId',
      'storage.s3.secretAccessKey',
    ]);
    for (const issue of issues) expect(issue.message).toMatch(/^credentials never go in the run config/);
  });

  it('checks types, ranges and enums with what was found', () => {
    const issues = issuesOf(`${MINIMAL}
audit: { enabled: yes }
stage3: { pointsPerSide: 0, shardSize: 2.5, cropNLayers: 9, onnx: { executionProvider: tpu } }
release: { shortestSide: "1500" }
`);
    expect(issueAt(issues, 'audit.enabled').message).toBe('expected true or false, got "yes"');
    expect(issueAt(issues, 'stage3.pointsPerSide').message).toBe(
      'expected a whole number of at least 1, got 0',
    );
    expect(issueAt(issues, 'stage3.shardSize').message).toBe(
      'expected a whole number of at least 1, got 2.5',
    );
    expect(issueAt(issues, 'stage3.cropNLayers').message).toBe('expected a whole number from 0 to 4, got 9');
    expect(issueAt(issues, 'stage3.onnx.executionProvider').message).toBe(
      'expected one of "cpu", "cuda", got "tpu"',
    );
    expect(
      issueAt(issuesOf(`${MINIMAL}stage3: { maxMaskCoverage: 0 }\n`), 'stage3.maxMaskCoverage').message,
    ).toBe('expected a number above 0 and at most 1, or null to keep masks of any size, got 0');
    expect(issueAt(issues, 'release.shortestSide').message).toBe(
      'expected a whole number of at least 1, got "1500"',
    );
  });

  it('explains run ids', () => {
    for (const bad of ['Demo', '-x', 'a b', 'a/b', 'x'.repeat(64), '']) {
      const issues = issuesOf(MINIMAL.replace('run: demo', `run: "${bad}"`));
      expect(issueAt(issues, 'run').message).toMatch(/^expected a run id: 1-63 lowercase letters/);
    }
    expect(issueAt(issuesOf(MINIMAL.replace('run: demo', 'run: 2024')), 'run').message).toMatch(
      /got 2024 \(quote it\)$/,
    );
    expect(load().run).toBe('demo');
    expect(
      loadRunConfig(MINIMAL.replace('run: demo', `run: a_b-1${'x'.repeat(58)}`), 'r.yaml').run,
    ).toHaveLength(63);
  });

  it('reports YAML syntax errors with line and column', () => {
    const issues = issuesOf('run: demo\nimages:\n  prefix: [unclosed\noutput: x\n');
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]?.path).toBe('');
    expect(issues[0]?.message).toMatch(/^YAML syntax error: /);
    expect(issues[0]?.line).toBeGreaterThanOrEqual(3);
    expect(issues[0]?.column).toBeGreaterThanOrEqual(1);
  });

  it('reports duplicate keys, which YAML would otherwise silently let win', () => {
    const issues = issuesOf(`${MINIMAL}stage3: {}\nstage3: {}\n`);
    expect(issues[0]).toMatchObject({ path: '', line: 9, column: 1 });
    expect(issues[0]?.message).toMatch(/unique/);
  });

  it('reports JSON syntax errors with line and column', () => {
    const issues = issuesOf('{\n  "run": "demo",\n}\n', `${BASE}/run.json`);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ path: '', line: 3, column: 1 });
    expect(issues[0]?.message).toMatch(/^JSON syntax error: /);
  });

  it('says so for an empty file and for a file that is not a mapping', () => {
    expect(issuesOf('')[0]?.message).toMatch(/^the file is empty/);
    expect(issuesOf('# only a comment\n')[0]?.message).toMatch(/^the file is empty/);
    expect(issuesOf('- a\n- b\n')).toEqual([
      { path: '', message: 'expected a mapping (key: value lines), got a list' },
    ]);
  });

  it('carries a readable message listing every issue', () => {
    try {
      loadRunConfig('run: demo\n', 'run.yaml');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(RunConfigError);
      expect((error as Error).message).toBe(
        [
          'run.yaml: 3 problems in the run config:',
          '  images: required: expected either "prefix" (a folder of images) or "manifest" with "format" (a list of image keys)',
          '  output: required: expected s3://bucket/prefix, file:///absolute/path, file://./relative/path or a plain path',
          '  models: required: expected a mapping (key: value lines)',
        ].join('\n'),
      );
    }
  });
});

describe('images', () => {
  const withImages = (images: string) => MINIMAL.replace(/images:\n {2}prefix: .*\n/, `images: ${images}\n`);

  it('reads a manifest with its format', () => {
    const config = loadRunConfig(
      withImages('{ manifest: s3://inventory/photos/manifest.csv, format: csv }'),
      'r.yaml',
    );
    expect(config.images).toEqual({ manifest: 's3://inventory/photos/manifest.csv', format: 'csv' });
  });

  it('reports the field of the form the user meant', () => {
    expect(issuesOf(withImages('{ manifest: s3://inventory/m.jsonl }'))).toEqual([
      expect.objectContaining({ path: 'images.format', message: 'required: expected one of "jsonl", "csv"' }),
    ]);
    expect(issuesOf(withImages('{ manifest: s3://inventory/m.txt, format: txt }'))).toEqual([
      expect.objectContaining({
        path: 'images.format',
        message: 'expected one of "jsonl", "csv", got "txt"',
      }),
    ]);
    expect(issuesOf(withImages('{ prefix: s3://photos/x, extensions: [] }'))).toEqual([
      expect.objectContaining({
        path: 'images.extensions',
        message: 'expected at least one file extension, got a list',
      }),
    ]);
    expect(issuesOf(withImages('{ prefix: s3://photos/x, extension: [jpg] }'))).toEqual([
      expect.objectContaining({
        path: 'images.extension',
        message: 'unknown key (did you mean "extensions"?)',
      }),
    ]);
  });

  it('refuses both forms at once, and neither', () => {
    expect(
      issueAt(
        issuesOf(withImages('{ prefix: s3://photos/x, manifest: s3://photos/m.csv, format: csv }')),
        'images',
      ).message,
    ).toMatch(/, not both$/);
    expect(issueAt(issuesOf(withImages('s3://photos/x')), 'images').message).toMatch(
      /got "s3:\/\/photos\/x"$/,
    );
    expect(issueAt(issuesOf(withImages('{}')), 'images.prefix').message).toMatch(/^required: /);
  });

  it('normalizes extensions: no dot, lower case, no duplicates', () => {
    const config = loadRunConfig(
      withImages('{ prefix: s3://photos/x, extensions: [.JPG, jpg, Png] }'),
      'r.yaml',
    );
    expect(config.images).toEqual({ prefix: 's3://photos/x', extensions: ['jpg', 'png'] });
  });
});

describe('locations', () => {
  const withOutput = (output: string) => MINIMAL.replace('output: s3://datasets/out/', `output: "${output}"`);

  it('resolves relative paths against the config file folder into file:// URLs', () => {
    const at = (output: string) => loadRunConfig(withOutput(output), `${BASE}/run.yaml`).output;
    expect(at('file://./out/')).toBe('file:///srv/configs/out/');
    expect(at('file://../shared/out')).toBe('file:///srv/shared/out');
    expect(at('out')).toBe('file:///srv/configs/out');
    expect(at('/data/out/')).toBe('file:///data/out/');
    expect(at('file:///data/out')).toBe('file:///data/out');
    expect(at('file:///data/my%20out')).toBe('file:///data/my%20out');
    expect(at('/data/my out')).toBe('file:///data/my%20out');
    expect(at('s3://bucket.name-1/a/b/')).toBe('s3://bucket.name-1/a/b/');
  });

  it('takes the base folder from the options when given', () => {
    const config = loadRunConfig(withOutput('./out'), 'inline', { baseDir: '/work/x' });
    expect(config.output).toBe('file:///work/x/out');
    expect(resolveLocation('~/data', '/anywhere')).toBe(pathToFileURL(path.join(homedir(), 'data')).href);
  });

  it('rejects what no object store can open', () => {
    const cases: [string, RegExp][] = [
      ['gs://bucket/x', /unsupported scheme "gs:"; use s3:\/\/ or file:\/\/$/],
      ['s3:/bucket/x', /unsupported scheme "s3:"/],
      ['s3://Bucket_Name/x', /"Bucket_Name" is not a valid S3 bucket name$/],
      ['s3://', /"" is not a valid S3 bucket name$/],
      ['s3://bucket/a//b', /empty, "\." or "\.\." segments$/],
      ['s3://bucket/a/../b', /empty, "\." or "\.\." segments$/],
      ['file://', /it names no path$/],
      ['', /it is empty$/],
    ];
    for (const [output, message] of cases) {
      const issue = issueAt(issuesOf(withOutput(output)), 'output');
      expect(issue.message).toMatch(/^expected s3:\/\/bucket\/prefix, file:\/\/\/absolute\/path/);
      expect(issue.message).toMatch(message);
    }
  });
});

describe('cross-field checks', () => {
  it('needs at least one enabled stage', () => {
    const issues = issuesOf(`${MINIMAL}stage3: { enabled: false }\n`);
    expect(issues).toEqual([
      {
        path: '',
        message: 'every stage is disabled; enable at least one of stage1, stage2, stage3, audit, release',
      },
    ]);
    expect(
      load(
        'stage3: { enabled: false }\naudit: { enabled: true, reference: { uri: s3://human-masks/m.json, format: coco } }\n',
      ).audit.enabled,
    ).toBe(true);
  });

  it('reports it together with field errors elsewhere', () => {
    const issues = issuesOf(`${MINIMAL}stage3: { enabled: false }\nrelease: { shortestSide: 0 }\n`);
    expect(issues.map((issue) => issue.path)).toEqual(['release.shortestSide', '']);
  });

  it('needs a reference to audit against', () => {
    const issues = issuesOf(`${MINIMAL}audit: { enabled: true }\n`);
    expect(issueAt(issues, 'audit.reference').message).toMatch(/^required when audit is enabled/);
  });

  it('allows an ignore value for png masks only', () => {
    const config = load(
      'audit: { enabled: true, reference: { uri: ./gt/, format: png, ignoreValue: 128 } }\n',
    );
    expect(config.audit.reference).toEqual({
      uri: 'file:///srv/configs/gt/',
      format: 'png',
      ignoreValue: 128,
    });
    const issues = issuesOf(
      `${MINIMAL}audit: { reference: { uri: s3://human-masks/m.json, format: coco, ignoreValue: 128 } }\n`,
    );
    expect(issueAt(issues, 'audit.reference.ignoreValue').message).toMatch(/only applies to format "png"/);
  });

  it('checks that the deepest crop layer still has points', () => {
    expect(
      load('stage3: { pointsPerSide: 32, cropNLayers: 4, cropNPointsDownscaleFactor: 2 }\n').stage3
        .cropNLayers,
    ).toBe(4);
    const issues = issuesOf(
      `${MINIMAL}stage3: { pointsPerSide: 8, cropNLayers: 2, cropNPointsDownscaleFactor: 3 }\n`,
    );
    expect(issueAt(issues, 'stage3.cropNLayers').message).toBe(
      'crop layer 2 would get int(8 / 3^2) = 0 points per side; lower cropNLayers or cropNPointsDownscaleFactor, or raise pointsPerSide',
    );
  });

  it('refuses dropSmallMasks without a minimum area', () => {
    const issues = issuesOf(`${MINIMAL}stage3: { dropSmallMasks: true }\n`);
    expect(issueAt(issues, 'stage3.dropSmallMasks').message).toMatch(/minMaskRegionArea is 0/);
    expect(load('stage3: { dropSmallMasks: true, minMaskRegionArea: 100 }\n').stage3.dropSmallMasks).toBe(
      true,
    );
  });
});

describe('values', () => {
  it('accepts the crop overlap ratio as a fraction', () => {
    expect(load('stage3: { cropOverlapRatio: 512/1500 }\n').stage3.cropOverlapRatio).toBe(512 / 1500);
    expect(load('stage3: { cropOverlapRatio: 0.25 }\n').stage3.cropOverlapRatio).toBe(0.25);
    expect(
      issueAt(issuesOf(`${MINIMAL}stage3: { cropOverlapRatio: 3/2 }\n`), 'stage3.cropOverlapRatio').message,
    ).toMatch(/got 1.5$/);
  });

  it('converts durations the way Temporal reads them', () => {
    expect(durationToMs('90s')).toBe(90_000);
    expect(durationToMs('2h')).toBe(7_200_000);
    expect(durationToMs('1.5d')).toBe(129_600_000);
    expect(() => durationToMs('2 hours')).toThrow(/not a duration/);
    expect(
      issueAt(issuesOf(`${MINIMAL}stage3: { heartbeatTimeout: 0h }\n`), 'stage3.heartbeatTimeout').message,
    ).toBe('expected a duration such as "90s", "30m", "2h" or "1d", got "0h"');
  });

  it('validates Temporal addresses', () => {
    expect(load('temporal: { address: "[::1]:7233" }\n').temporal.address).toBe('[::1]:7233');
    expect(load('temporal: { address: temporal.example.com:443 }\n').temporal.address).toBe(
      'temporal.example.com:443',
    );
    for (const bad of ['localhost', 'host:99999', 'http://host:7233']) {
      const issues = issuesOf(`${MINIMAL}temporal: { address: "${bad}" }\n`);
      expect(issues).toHaveLength(1);
      expect(issues[0]?.message).toMatch(/^expected host:port/);
    }
  });

  it('leaves S3 options it is not told to the object store', () => {
    expect(load().storage.s3).toEqual({ endpoint: null, region: null, forcePathStyle: null });
    const config = load('storage: { s3: { endpoint: "http://127.0.0.1:9000", region: us-east-1 } }\n');
    expect(config.storage.s3).toEqual({
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      forcePathStyle: null,
    });
  });

  it('refuses settings of work that is not implemented yet, naming each field', () => {
    const issues = issuesOf(`
run: demo
images: { prefix: s3://photos/raw/ }
output: s3://datasets/out/
stage3: { enabled: true }
models: { sam: s3://models/sam/ }
temporal: { taskQueues: { inference: gpu } }
`);
    expect(issues.map((issue) => issue.path)).toEqual(['temporal.taskQueues']);
    expect(issues[0]!.message).toMatch(/^not implemented yet: .* remove this setting$/);
  });

  it('reads stage 2 with its defaults, and refuses it with neither stage 1 nor a detector to start from', () => {
    const config = load(`stage1: { enabled: true }
stage2: { enabled: true, rounds: 2, prefill: { prompt: centre-point }, detector: { scoreThreshold: 0.2 } }
`);
    expect(config.stage2).toMatchObject({
      enabled: true,
      rounds: 2,
      imagesPerRound: 100,
      detector: { model: 'detector', scoreThreshold: 0.2, nmsIou: null, maxDetections: null },
      prefill: { prompt: 'centre-point', predIouThresh: 0.88, boxNmsThresh: 0.7 },
      retrain: { betweenRounds: true, minGain: 0 },
    });
    expect(config.models.detector).toBeNull();

    const issues = issuesOf(`
run: demo
images: { prefix: s3://photos/raw/ }
output: s3://datasets/out/
models: { sam: s3://models/sam/ }
stage2: { enabled: true }
`);
    expect(issues.map((issue) => issue.path)).toEqual(['stage2']);
    expect(issueAt(issues, 'stage2').message).toMatch(/enable stage 1 .* or set models.detector/);
    expect(
      issuesOf(`
run: demo
images: { prefix: s3://photos/raw/ }
output: s3://datasets/out/
models: { sam: s3://models/sam/ }
stage1: { enabled: true }
stage2: { enabled: true, prefill: { prompt: boxes } }
`).map((issue) => [issue.path, issue.message]),
    ).toEqual([['stage2.prefill.prompt', expect.stringMatching(/"box" or "centre-point"/)]]);

    const seeded = loadRunConfig(
      `run: demo
images: { prefix: s3://photos/raw/ }
output: s3://datasets/out/
models: { sam: s3://models/sam/, detector: s3://models/det/ }
stage2: { enabled: true }
`,
      `${BASE}/run.yaml`,
    );
    expect(seeded.models.detector).toBe('s3://models/det/');
  });

  it('reads stage 1 and its simulated annotators, with defaults, and says what is missing or wrong', () => {
    const config = load(`stage1: { enabled: true, imagesPerRound: 20, lease: 5m }
simulatedAnnotators: { enabled: true, count: 3, intent: { uri: ./bsds/partitions, format: partitions } }
`);
    expect(config.stage1).toMatchObject({ enabled: true, rounds: 1, imagesPerRound: 20, lease: '5m' });
    expect(config.stage1.service).toEqual({ host: '127.0.0.1', port: 8750 });
    expect(config.simulatedAnnotators.intent).toMatchObject({ format: 'partitions' });
    expect(config.simulatedAnnotators.intent!.uri).toMatch(/^file:\/\/\/.*\/bsds\/partitions$/);
    const issues = issuesOf(`${MINIMAL}stage1: { enabled: true, lease: soon, rounds: 0, colour: red }
simulatedAnnotators: { enabled: true }
`);
    expect(issues.map((issue) => issue.path).sort()).toEqual([
      'simulatedAnnotators.intent',
      'stage1.colour',
      'stage1.lease',
      'stage1.rounds',
    ]);
    expect(issueAt(issues, 'simulatedAnnotators.intent').message).toMatch(
      /required when simulatedAnnotators/,
    );
  });

  it('reads JSON by extension or by its first character, and YAML anchors', () => {
    const json = JSON.stringify(parseYaml(MINIMAL));
    expect(loadRunConfig(json, 'run.json').run).toBe('demo');
    expect(loadRunConfig(json, 'run.conf').run).toBe('demo');
    const yaml = `${MINIMAL}stage3: { <<: &grid { pointsPerSide: 16 }, shardSize: 7 }\nrelease: { enabled: true, shortestSide: 900 }\n`;
    expect(load(yaml.slice(MINIMAL.length)).stage3).toMatchObject({ pointsPerSide: 16, shardSize: 7 });
  });

  it('validates with the exported schema as well', () => {
    const result = RunConfigSchema.safeParse(parseYaml(MINIMAL));
    expect(result.success).toBe(true);
  });
});

describe('files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sae-run-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves relative paths against the folder of the file', async () => {
    const file = path.join(dir, 'run.yaml');
    await writeFile(file, MINIMAL.replace('output: s3://datasets/out/', 'output: ./out/'));
    const config = await loadRunConfigFile(file);
    expect(config.output).toBe(pathToFileURL(path.join(dir, 'out')).href + '/');
  });

  it('says when a file cannot be read', async () => {
    await expect(loadRunConfigFile(path.join(dir, 'missing.yaml'))).rejects.toBeInstanceOf(
      RunConfigReadError,
    );
    await expect(loadRunConfigFile(dir)).rejects.toThrow(/cannot read run config/);
  });

  it('validates the examples', async () => {
    const small = await loadRunConfigFile(path.join(REPO, 'examples/run.yaml'));
    expect(small.stage3.enabled).toBe(true);
    expect(small.images).toMatchObject({
      prefix: pathToFileURL(path.join(REPO, 'examples/synth/images')).href + '/',
    });
    expect(small.output.startsWith('file:///')).toBe(true);

    const full = await loadRunConfigFile(path.join(REPO, 'examples/run-s3.yaml'));
    expect([full.stage3, full.audit, full.release].map((s) => s.enabled)).toEqual([true, true, true]);
    expect(full.images).toMatchObject({ format: 'csv' });
    expect(full.output.startsWith('s3://')).toBe(true);
    expect(full.stage3).toMatchObject(SA1B_PAPER_AMG);
  });
});

describe('stage3.thresholds', () => {
  it('defaults to "official": the config\'s own thresholds, SAM\'s 0.88 and 0.95 unless set', () => {
    expect(load().stage3).toMatchObject({
      thresholds: 'official',
      predIouThresh: 0.88,
      stabilityScoreThresh: 0.95,
    });
    expect(load('stage3: { thresholds: official, stabilityScoreThresh: 0.5 }\n').stage3).toMatchObject({
      predIouThresh: 0.88,
      stabilityScoreThresh: 0.5,
    });
  });

  it('"model" leaves both to the model package (null in the resolved config)', () => {
    const config = load('stage3: { thresholds: model }\n');
    expect(config.stage3).toMatchObject({
      thresholds: 'model',
      predIouThresh: null,
      stabilityScoreThresh: null,
    });
    // The resolved config validates again to itself.
    for (const format of ['yaml', 'json'] as const) {
      expect(loadRunConfig(formatRunConfig(config, format), `/elsewhere/resolved.${format}`)).toEqual(config);
    }
  });

  it('refuses explicit thresholds with "model", and null ones with "official", at their field paths', () => {
    const issues = issuesOf(
      `${MINIMAL}stage3:\n  thresholds: model\n  predIouThresh: 0.3\n  stabilityScoreThresh: 0.5\n`,
    );
    expect(issues.map((i) => i.path)).toEqual(['stage3.predIouThresh', 'stage3.stabilityScoreThresh']);
    expect(issueAt(issues, 'stage3.predIouThresh')).toMatchObject({ line: 10, column: 3 });
    expect(issueAt(issues, 'stage3.predIouThresh').message).toMatch(
      /comes from the model package's amg_calibration while thresholds is "model"/,
    );
    const nulls = issuesOf(`${MINIMAL}stage3:\n  predIouThresh: null\n`);
    expect(issueAt(nulls, 'stage3.predIouThresh').message).toMatch(/null only goes with thresholds: model/);
  });

  it('takes "model" when stage 1 retrains and calibrates what it promotes; refuses it when calibration is off', () => {
    const config = load(
      'stage1:\n  enabled: true\n  retrain: { enabled: true }\nstage3:\n  thresholds: model\n',
    );
    expect(config.stage3.thresholds).toBe('model');
    expect(config.stage1.retrain.calibration).toEqual({ enabled: true, maxImages: 20, pointsPerSide: null });
    const issues = issuesOf(
      `${MINIMAL}stage1:\n  enabled: true\n  retrain: { enabled: true, calibration: { enabled: false } }\n` +
        'stage3:\n  thresholds: model\n',
    );
    expect(issueAt(issues, 'stage3.thresholds').message).toMatch(
      /the SAM version the run promotes last, and with stage1.retrain.calibration.enabled false/,
    );
  });

  it('names the two choices when the value is neither', () => {
    const issues = issuesOf(`${MINIMAL}stage3:\n  thresholds: calibrated\n`);
    expect(formatRunConfigIssue(issueAt(issues, 'stage3.thresholds'))).toBe(
      'stage3.thresholds: expected "official" or "model", got "calibrated" (line 9, column 3)',
    );
  });
});
