// The run config: one YAML or JSON file that describes a dataset run (DESIGN.md "Run config").
//
// - `createRunConfigSchema()` / `RunConfigSchema`: the zod schema. Every object is strict, so a
//   misspelled key is an error instead of a silently ignored setting, and every setting has the
//   paper's or the official SAM default, so a config only names what it changes.
// - `loadRunConfig(text, fileName)` / `loadRunConfigFile(path)`: parse YAML or JSON, validate, fill in
//   defaults and resolve relative paths, or throw one `RunConfigError` that lists every problem.
//
// Workflow code must only `import type` from this module: it uses node:fs, node:path and yaml,
// which the Temporal workflow sandbox does not allow.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, stringify, type Document } from 'yaml';
import { z } from 'zod';
import { DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS } from './image-io.ts';

// ---------------------------------------------------------------------------------------------
// Messages. Every message reads "expected <what>, got <found>", so a newcomer sees both at once.

/** The part of a zod issue that messages use. */
type IssueInput = { input?: unknown; code?: string; expected?: string };

/** How a value found in the file is shown in a message. */
function show(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function expectedGot(what: string, input: unknown, hint = ''): string {
  if (input === undefined) return `required: expected ${what}`;
  return `expected ${what}, got ${show(input)}${hint}`;
}

/** A zod `error` option: the same "expected ..., got ..." message for every way a field can fail. */
function expecting(what: string) {
  return { error: (issue: IssueInput) => expectedGot(what, issue.input, quoteHint(issue)) };
}

/** YAML reads `run: 2024` or `region: 1` as numbers; say how to make them text. */
function quoteHint(issue: IssueInput): string {
  const textExpected = issue.code === 'invalid_type' && issue.expected === 'string';
  return textExpected && typeof issue.input !== 'string' && typeof issue.input !== 'object'
    ? ' (quote it)'
    : '';
}

// ---------------------------------------------------------------------------------------------
// Building blocks shared by the sections below.

const bool = () => z.boolean(expecting('true or false'));

/** A threshold or share: a number in [0, 1]. */
const fraction = () => {
  const e = expecting('a number between 0 and 1');
  return z.number(e).min(0, e).max(1, e);
};

/** Like `fraction`, but `null` turns the feature off; `meaning` says what null does. */
const nullableFraction = (meaning: string) => {
  const e = expecting(`a number between 0 and 1, or null to ${meaning}`);
  return z.number(e).min(0, e).max(1, e).nullable();
};

const intAtLeast = (min: number) => {
  const e = expecting(`a whole number of at least ${min}`);
  return z.int(e).min(min, e);
};

const intBetween = (min: number, max: number) => {
  const e = expecting(`a whole number from ${min} to ${max}`);
  return z.int(e).min(min, e).max(max, e);
};

const numberAtLeast = (min: number) => {
  const e = expecting(`a number of at least ${min}`);
  return z.number(e).min(min, e);
};

/** A non-empty name without spaces (Temporal namespaces and task queues, AWS regions). */
const name = (what: string) => {
  const e = expecting(what);
  return z.string(e).regex(/^\S+$/, e);
};

// Run ids become part of Temporal workflow ids (`<run>/stage3/shard-<n>`) and storage keys
// (`runs/<run>/...`), so they are restricted to characters that are safe in both. The first
// character may not be `-` or `_` so an id is never mistaken for a command-line flag.
const RUN_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const RUN_ID_WHAT = 'a run id: 1-63 lowercase letters, digits, "-" or "_", starting with a letter or digit';
const runId = () => z.string(expecting(RUN_ID_WHAT)).regex(RUN_ID, expecting(RUN_ID_WHAT));

// Durations use the `ms` package format that Temporal accepts for timeouts: a number and one unit.
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const DURATION_UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_WHAT = 'a duration such as "90s", "30m", "2h" or "1d"';

/** Milliseconds in a duration string such as "2h"; throws on anything the schema would reject. */
export function durationToMs(text: string): number {
  const match = DURATION.exec(text);
  if (!match) throw new Error(`not a duration: ${JSON.stringify(text)} (expected e.g. "90s", "30m", "2h")`);
  return Number(match[1]) * DURATION_UNIT_MS[match[2] as keyof typeof DURATION_UNIT_MS];
}

const duration = () => {
  const e = expecting(DURATION_WHAT);
  return z.string(e).refine((text) => DURATION.test(text) && durationToMs(text) > 0, e);
};

/**
 * A setting for work that does not exist yet: absent is fine, any value is refused, so a config
 * never validates with a stage that would then be silently skipped.
 */
const notImplementedYet = (what: string) =>
  z
    .undefined({ error: `not implemented yet: ${what} not part of sa-engine yet; remove this setting` })
    .optional();

// ---------------------------------------------------------------------------------------------
// Locations: where images, outputs, models and reference masks live.
//
// Accepted: `s3://bucket/prefix`, `file:///absolute/path`, `file://./relative/path` or a plain path.
// Relative paths are resolved against the config file's folder (like tsconfig or docker-compose),
// and every local location comes out as an absolute `file:///` URL, so the resolved config means
// the same thing whatever folder a worker runs in.

const LOCATION_WHAT = 's3://bucket/prefix, file:///absolute/path, file://./relative/path or a plain path';
const S3_URI = /^s3:\/\/([^/]*)(\/.*)?$/;
const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const URI_SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/** Why `text` is not a usable location, or undefined when it is one. */
function locationProblem(text: string): string | undefined {
  if (text.trim() === '') return 'it is empty';
  const s3 = S3_URI.exec(text);
  if (s3) return s3Problem(s3[1] ?? '', s3[2] ?? '');
  if (text.startsWith('file:///')) return fileUrlProblem(text);
  if (text.startsWith('file://')) return text.length > 'file://'.length ? undefined : 'it names no path';
  const scheme = URI_SCHEME.exec(text);
  // Also catches typos such as `s3:/bucket` that would otherwise pass as a relative path.
  if (scheme) return `unsupported scheme "${scheme[1]}:"; use s3:// or file://`;
  return undefined;
}

function s3Problem(bucket: string, key: string): string | undefined {
  if (!S3_BUCKET.test(bucket)) return `"${bucket}" is not a valid S3 bucket name`;
  // Same rule as lib/object-store.ts: a prefix is clean "a/b/c", optionally with one trailing slash.
  const segments = key.replace(/^\//, '').replace(/\/$/, '').split('/');
  if (key.length > 1 && segments.some((s) => s === '' || s === '.' || s === '..')) {
    return 'the prefix must not contain empty, "." or ".." segments';
  }
  return undefined;
}

function fileUrlProblem(text: string): string | undefined {
  try {
    fileURLToPath(text);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/** The absolute form of a valid location: s3 URIs unchanged, local ones as `file:///` URLs. */
export function resolveLocation(location: string, baseDir: string): string {
  if (location.startsWith('s3://')) return location;
  const href = pathToFileURL(localPath(location, baseDir)).href;
  // Keep a trailing slash: for a prefix it says "this folder", not "keys starting with this".
  return location.endsWith('/') && !href.endsWith('/') ? `${href}/` : href;
}

function localPath(location: string, baseDir: string): string {
  if (location.startsWith('file:///')) return fileURLToPath(location);
  const rest = location.startsWith('file://') ? location.slice('file://'.length) : location;
  if (rest === '~' || rest.startsWith('~/')) return path.join(os.homedir(), rest.slice(1));
  return path.resolve(baseDir, rest);
}

/** A location field; `baseDir()` is read at parse time so one schema can serve many files. */
function locationSchema(baseDir: () => string) {
  return z
    .string(expecting(LOCATION_WHAT))
    .superRefine((text, ctx) => {
      const problem = locationProblem(text);
      if (problem)
        ctx.addIssue({ code: 'custom', message: `${expectedGot(LOCATION_WHAT, text)}: ${problem}` });
    })
    .transform((text) => resolveLocation(text, baseDir()));
}

type LocationSchema = ReturnType<typeof locationSchema>;

// ---------------------------------------------------------------------------------------------
// Sections.

export const DEFAULT_IMAGE_EXTENSIONS = ['jpg', 'jpeg', 'png', 'bmp', 'webp', 'tif', 'tiff'] as const;

// Written with or without the dot, in any case; stored lower-case without the dot and matched
// case-insensitively (cameras write `.JPG`).
const extension = () => {
  const e = expecting('a file extension such as "jpg"');
  return z
    .string(e)
    .regex(/^\.?[A-Za-z0-9]+$/, e)
    .transform((ext) => ext.replace(/^\./, '').toLowerCase());
};

function imagesSchema(location: LocationSchema) {
  const fromPrefix = z.strictObject({
    /** Every object under this prefix whose extension is listed is an image of the run. */
    prefix: location,
    extensions: z
      .array(extension(), expecting('a list of file extensions'))
      .min(1, expecting('at least one file extension'))
      .transform((list) => [...new Set(list)])
      .default([...DEFAULT_IMAGE_EXTENSIONS]),
  });
  const fromManifest = z.strictObject({
    /** A list of image keys: JSON lines, or an S3 Inventory-style CSV (bucket,key,...). */
    manifest: location,
    format: z.enum(['jsonl', 'csv']),
  });
  return z.union([fromPrefix, fromManifest], {
    error: (issue: IssueInput) => imagesUnionMessage(issue.input),
  });
}

function imagesUnionMessage(input: unknown): string {
  const expected =
    'expected either "prefix" (a folder of images) or "manifest" with "format" (a list of image keys)';
  if (input === undefined) return `required: ${expected}`;
  if (!isRecord(input)) return `${expected}, got ${show(input)}`;
  return 'prefix' in input && 'manifest' in input ? `${expected}, not both` : expected;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Credentials are deliberately absent: the AWS SDK reads them from the environment
// (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...), the shared config files or an instance/pod role.
// Each null means "let lib/object-store.ts decide" (env SAE_S3_ENDPOINT, AWS_REGION, ...).
const StorageSchema = z.strictObject({
  s3: z
    .strictObject({
      /** For S3-compatible servers (MinIO, the dev stack); null = env SAE_S3_ENDPOINT, else AWS. */
      endpoint: z
        .string(expecting('an http(s):// URL'))
        .regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, expecting('an http(s):// URL'))
        .nullable()
        .default(null),
      /** null = env AWS_REGION / AWS_DEFAULT_REGION, else us-east-1. */
      region: name('an AWS region such as "us-east-1"').nullable().default(null),
      /** null = true when an endpoint is set: S3-compatible servers have no per-bucket host names. */
      forcePathStyle: bool().nullable().default(null),
    })
    .prefault({}),
});

function modelsSchema(location: LocationSchema) {
  return z.strictObject({
    /** A model package folder holding model.json, the encoder and the decoder. */
    sam: location,
    detector: notImplementedYet('stage 2 and its box detector are'),
  });
}

const HOST_PORT_WHAT = 'host:port, such as "127.0.0.1:7233"';
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const isHostPort = (text: string) => Number(HOST_PORT.exec(text)?.[2] ?? NaN) <= 65535;

const TemporalSchema = z.strictObject({
  address: z
    .string(expecting(HOST_PORT_WHAT))
    .refine(isHostPort, expecting(HOST_PORT_WHAT))
    .default('127.0.0.1:7233'),
  namespace: name('a Temporal namespace name').default('default'),
  // Workers and workflows use the fixed queue names of lib/task-queues.ts.
  taskQueues: notImplementedYet("task queues other than sa-engine's own are"),
});

/** Human masks: the audit's reference, or the ground truth that simulated annotators click from. */
function maskSourceSchema(location: LocationSchema) {
  return z
    .strictObject({
      uri: location,
      // coco: a COCO instances JSON. png: one single-channel mask image per image (PNG or BMP),
      // named like the image; 0 is background, each other value one object.
      format: z.enum(['coco', 'png']),
      /** A pixel value to leave out of IoU (GrabCut's unlabelled band is 128); png only. */
      ignoreValue: intBetween(0, 255).nullable().default(null),
    })
    .superRefine((source, ctx) => {
      if (source.format === 'coco' && source.ignoreValue !== null) {
        ctx.addIssue({
          code: 'custom',
          path: ['ignoreValue'],
          message: 'only applies to format "png"; COCO masks have no ignore value (set it to null)',
        });
      }
    });
}

// `scripts/amg.py` can't take 512/1500 on its command line; here `cropOverlapRatio: 512/1500` works.
const cropOverlapRatio = () => {
  const e = expecting('a number from 0 up to (not including) 1, or a fraction such as "512/1500"');
  const asNumber = (value: unknown) => {
    const match =
      typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)\s*$/.exec(value) : null;
    return match ? Number(match[1]) / Number(match[2]) : value;
  };
  return z.preprocess(asNumber, z.number(e).min(0, e).lt(1, e));
};

const OnnxSchema = z.strictObject({
  executionProvider: z.enum(['cpu', 'cuda']).default('cpu'),
  /** 0 = let onnxruntime choose (all cores). */
  intraOpThreads: intAtLeast(0).default(0),
  interOpThreads: intAtLeast(0).default(0),
});

const Stage3Schema = z
  .strictObject({
    enabled: bool().default(true),
    // Automatic mask generator: the official SamAutomaticMaskGenerator defaults (sam-spec §3).
    pointsPerSide: intAtLeast(1).default(32),
    pointsPerBatch: intAtLeast(1).default(64),
    /**
     * Where the two mask filters' thresholds come from. official: predIouThresh and
     * stabilityScoreThresh here (by default SAM's 0.88 and 0.95, tuned for ViT-H). model: the
     * model package's `amg_calibration` in model.json (scripts/calibrate-amg.ts); the run fails
     * at its first shard when the package has none. With "model" the two are null here.
     */
    thresholds: z.enum(['official', 'model'], expecting('"official" or "model"')).default('official'),
    predIouThresh: fraction().nullable().optional(),
    stabilityScoreThresh: fraction().nullable().optional(),
    stabilityScoreOffset: numberAtLeast(0).default(1.0),
    boxNmsThresh: fraction().default(0.7),
    // Layer l has 4^l crops: 4 layers are already 341 crops per image, so more is surely a typo.
    cropNLayers: intBetween(0, 4).default(0),
    cropNmsThresh: fraction().default(0.7),
    cropOverlapRatio: cropOverlapRatio().default(512 / 1500),
    cropNPointsDownscaleFactor: intAtLeast(1).default(1),
    minMaskRegionArea: intAtLeast(0).default(0),
    // Paper-only filters the official code lacks; off by default (see SA1B_PAPER_AMG).
    /** Drop masks covering at least this share of the image (paper: 0.95); 0 would drop them all. */
    maxMaskCoverage: z
      .number(expecting('a number above 0 and at most 1, or null to keep masks of any size'))
      .gt(0, expecting('a number above 0 and at most 1, or null to keep masks of any size'))
      .max(1, expecting('a number above 0 and at most 1, or null to keep masks of any size'))
      .nullable()
      .default(null),
    /** Drop a mask whose largest component is below minMaskRegionArea, instead of keeping that component. */
    dropSmallMasks: bool().default(false),
    // How the run is cut up and scheduled.
    /** Images per shard workflow. */
    shardSize: intAtLeast(1).default(1000),
    /** Shards running at once (the sliding window). */
    maxConcurrentShards: intAtLeast(1).default(4),
    /** Images per resume point of a shard: fetched concurrently, segmented one at a time, saved as one part. */
    batchImages: intAtLeast(1).default(8),
    /**
     * How long a shard may go without a heartbeat before Temporal retries it on another worker:
     * the time to notice a dead inference worker. The activity heartbeats every few seconds,
     * also in the middle of an image, so this only needs to cover a stalled or killed process.
     */
    heartbeatTimeout: duration().default('2m'),
    // Decompression-bomb guard. 120 MP admits every current camera (100-megapixel medium format is
    // 11656x8736 = 102 MP; SA-1B originals average 16 MP) while refusing the giga-pixel images bombs
    // decode to; a decoded 120 MP RGBA image is 480 MB, so a batch of 8 still fits a 16 GB worker.
    maxImagePixels: intAtLeast(1).default(DEFAULT_MAX_PIXELS),
    /** Image files over this many bytes are recorded as failed without being downloaded. */
    maxImageBytes: intAtLeast(1).default(DEFAULT_MAX_IMAGE_BYTES),
    onnx: OnnxSchema.prefault({}),
  })
  .superRefine((stage3, ctx) => {
    // Layer l of the crop pyramid gets int(pointsPerSide / factor^l) points per side (sam-spec §3).
    const deepest = Math.floor(
      stage3.pointsPerSide / stage3.cropNPointsDownscaleFactor ** stage3.cropNLayers,
    );
    if (deepest < 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['cropNLayers'],
        message:
          `crop layer ${stage3.cropNLayers} would get int(${stage3.pointsPerSide} / ` +
          `${stage3.cropNPointsDownscaleFactor}^${stage3.cropNLayers}) = 0 points per side; ` +
          'lower cropNLayers or cropNPointsDownscaleFactor, or raise pointsPerSide',
      });
    }
    if (stage3.dropSmallMasks && stage3.minMaskRegionArea === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['dropSmallMasks'],
        message: 'has no effect while minMaskRegionArea is 0; set minMaskRegionArea too (paper: 100)',
      });
    }
    for (const field of ['predIouThresh', 'stabilityScoreThresh'] as const) {
      const value = stage3[field];
      if (stage3.thresholds === 'model' && typeof value === 'number') {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message:
            'comes from the model package\'s amg_calibration while thresholds is "model"; ' +
            'remove it, or set thresholds to "official" to use your own',
        });
      }
      if (stage3.thresholds === 'official' && value === null) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: 'expected a number between 0 and 1 (null only goes with thresholds: model)',
        });
      }
    }
  })
  .transform((stage3) => {
    // The official SamAutomaticMaskGenerator defaults (sam-spec §3).
    const fromModel = stage3.thresholds === 'model';
    return {
      ...stage3,
      predIouThresh: fromModel ? null : (stage3.predIouThresh ?? 0.88),
      stabilityScoreThresh: fromModel ? null : (stage3.stabilityScoreThresh ?? 0.95),
    };
  });

function auditSchema(location: LocationSchema) {
  return z
    .strictObject({
      enabled: bool().default(false),
      reference: maskSourceSchema(location).nullable().default(null),
      /** Paper: 500 images (about 50k masks) were checked by professional annotators. */
      sampleSize: intAtLeast(1).default(500),
      seed: intAtLeast(0).default(0),
      // Fail the audit when a share falls below its gate; null = report only.
      // Paper: 94% of masks above 0.90 IoU and 97% above 0.75.
      gate: z
        .strictObject({
          minShareAbove090: nullableFraction('not gate on it').default(null),
          minShareAbove075: nullableFraction('not gate on it').default(null),
          minMeanIou: nullableFraction('not gate on it').default(null),
        })
        .prefault({}),
    })
    .superRefine((audit, ctx) => {
      if (audit.enabled && audit.reference === null) {
        ctx.addIssue({
          code: 'custom',
          path: ['reference'],
          message: 'required when audit is enabled: the human masks to compare with ({ uri, format })',
        });
      }
    });
}

const ReleaseSchema = z.strictObject({
  enabled: bool().default(false),
  /** Release copies are downscaled (never upscaled) to this shortest side, as SA-1B was. */
  shortestSide: intAtLeast(1).default(1500),
});

// ---------------------------------------------------------------------------------------------
// The whole config.

const SECTIONS_WITH_WORK = ['stage3', 'audit', 'release'] as const;

/**
 * At least one stage must do something. Runs even when other fields failed (so the user sees this
 * together with them), hence it reads the possibly-unparsed value defensively.
 */
function checkSomethingEnabled(config: Record<string, unknown>, ctx: z.RefinementCtx): void {
  const flags = SECTIONS_WITH_WORK.map((section) => {
    const value = config[section];
    return isRecord(value) ? value.enabled : undefined;
  });
  if (flags.includes(true) || !flags.every((flag) => flag === false)) return;
  ctx.addIssue({
    code: 'custom',
    path: [],
    message: `every stage is disabled; enable at least one of ${SECTIONS_WITH_WORK.join(', ')}`,
  });
}

export interface RunConfigSchemaOptions {
  /** Folder that relative paths are resolved against; default: the current directory at parse time. */
  baseDir?: string;
}

export function createRunConfigSchema(options: RunConfigSchemaOptions = {}) {
  const location = locationSchema(() => options.baseDir ?? process.cwd());
  return z
    .strictObject({
      run: runId(),
      images: imagesSchema(location),
      /** Prefix that receives runs/<run>/... (DESIGN.md "Storage layout"). */
      output: location,
      storage: StorageSchema.prefault({}),
      models: modelsSchema(location),
      temporal: TemporalSchema.prefault({}),
      simulatedAnnotators: notImplementedYet('simulated annotators (stages 1 and 2) are'),
      stage1: notImplementedYet('stage 1 (assisted-manual annotation rounds) is'),
      stage2: notImplementedYet('stage 2 (semi-automatic annotation rounds) is'),
      stage3: Stage3Schema.prefault({}),
      audit: auditSchema(location).prefault({}),
      release: ReleaseSchema.prefault({}),
    })
    .superRefine((config, ctx) => checkSomethingEnabled(config, ctx), {
      when: (payload) => typeof payload.value === 'object' && payload.value !== null,
    });
}

/** The schema with relative paths resolved against the current directory. */
export const RunConfigSchema = createRunConfigSchema();

/** A validated run config with every default filled in and every location absolute. */
export type RunConfig = z.output<typeof RunConfigSchema>;
/** What a config file may contain (most fields optional). */
export type RunConfigInput = z.input<typeof RunConfigSchema>;
export type ImagesConfig = RunConfig['images'];
export type StorageConfig = RunConfig['storage'];
export type ModelsConfig = RunConfig['models'];
export type TemporalConfig = RunConfig['temporal'];
export type MaskSourceConfig = NonNullable<RunConfig['audit']['reference']>;
export type Stage3Config = RunConfig['stage3'];
export type OnnxConfig = Stage3Config['onnx'];
export type AuditConfig = RunConfig['audit'];
export type ReleaseConfig = RunConfig['release'];

/** The defaults of every optional section, as a config without those sections gets them. */
export const RUN_CONFIG_DEFAULTS: Omit<RunConfig, 'run' | 'images' | 'output' | 'models'> & {
  images: { extensions: readonly string[] };
} = {
  images: { extensions: DEFAULT_IMAGE_EXTENSIONS },
  storage: StorageSchema.parse({}),
  temporal: TemporalSchema.parse({}),
  stage3: Stage3Schema.parse({}),
  audit: auditSchema(locationSchema(() => process.cwd())).parse({}),
  release: ReleaseSchema.parse({}),
};

/** What the paper did in the fully automatic stage, where it differs from the official defaults. */
export const SA1B_PAPER_AMG = {
  cropNLayers: 2,
  cropNPointsDownscaleFactor: 2,
  minMaskRegionArea: 100,
  maxMaskCoverage: 0.95,
  dropSmallMasks: true,
} as const satisfies Partial<Stage3Config>;

// ---------------------------------------------------------------------------------------------
// Errors.

export interface RunConfigIssue {
  /** Dotted field path such as `stage3.predIouThresh` or `images.extensions[2]`; '' for the file. */
  path: string;
  /** What was expected, and what was found when that helps. */
  message: string;
  /** 1-based position in the file, when known. */
  line?: number;
  column?: number;
}

/** One line per issue: `stage3.predIouThresh: expected ... (line 12, column 3)`. */
export function formatRunConfigIssue(issue: RunConfigIssue): string {
  const where = issue.line === undefined ? '' : ` (line ${issue.line}, column ${issue.column ?? 1})`;
  return `${issue.path ? `${issue.path}: ` : ''}${issue.message}${where}`;
}

/** The file parsed but is not a valid run config; `issues` lists every problem found. */
export class RunConfigError extends Error {
  override readonly name = 'RunConfigError';
  readonly fileName: string;
  readonly issues: readonly RunConfigIssue[];

  constructor(fileName: string, issues: readonly RunConfigIssue[]) {
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    const lines = issues.map((issue) => `  ${formatRunConfigIssue(issue)}`);
    super([`${fileName}: ${count} in the run config:`, ...lines].join('\n'));
    this.fileName = fileName;
    this.issues = issues;
  }
}

/** The config file could not be read at all (missing, unreadable, a folder). */
export class RunConfigReadError extends Error {
  override readonly name = 'RunConfigReadError';
  readonly fileName: string;

  constructor(fileName: string, cause: unknown) {
    super(`cannot read run config ${fileName}: ${(cause as Error).message ?? String(cause)}`, { cause });
    this.fileName = fileName;
  }
}

/** `['images', 'extensions', 2]` -> `images.extensions[2]`. */
function dottedPath(segments: readonly PropertyKey[]): string {
  return segments
    .map((segment, i) =>
      typeof segment === 'number' ? `[${segment}]` : i === 0 ? String(segment) : `.${String(segment)}`,
    )
    .join('');
}

// Zod's own messages for issues that no field above words itself ("Invalid input: ...").
const TYPE_NOUNS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping (key: value lines)',
  array: 'a list',
};

function fallbackMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_type') {
    return expectedGot(TYPE_NOUNS[issue.expected] ?? issue.expected, issue.input, quoteHint(issue));
  }
  if (issue.code === 'invalid_value') {
    return expectedGot(`one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`, issue.input);
  }
  return undefined;
}

/** An issue before its path is written out and located in the file. */
interface RawIssue {
  at: PropertyKey[];
  message: string;
}

/** Zod issues -> ours: one per unknown key, and the closest branch of a failed union. */
function toRawIssues(
  issues: readonly z.core.$ZodIssue[],
  prefix: readonly PropertyKey[],
  schema: z.core.$ZodType,
): RawIssue[] {
  return issues.flatMap((issue): RawIssue[] => {
    const at = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      const known = objectKeysAt(schema, at);
      return issue.keys.map((key) => ({ at: [...at, key], message: unknownKeyMessage(key, known) }));
    }
    if (issue.code === 'invalid_union') {
      const branch = closestBranch(issue.errors);
      if (branch) return toRawIssues(branch, at, schema);
    }
    return [{ at, message: issue.message }];
  });
}

/**
 * A union fails as a whole; report the branch the user most likely meant. A branch that calls one
 * of the user's keys unknown is not it (`{ manifest: ... }` is not a `prefix` config); among the
 * rest, the one with the fewest problems. When that leaves no single branch, the union's own
 * message ("either ... or ...") is clearer.
 */
function closestBranch(
  branches: readonly (readonly z.core.$ZodIssue[])[],
): readonly z.core.$ZodIssue[] | undefined {
  const fitting = branches.filter(
    (issues) => !issues.some((i) => i.code === 'unrecognized_keys' && i.path.length === 0),
  );
  const fewest = Math.min(...fitting.map((issues) => issues.length));
  const best = fitting.filter((issues) => issues.length === fewest);
  return best.length === 1 ? best[0] : undefined;
}

const CREDENTIAL_KEY = /secret|password|credential|access_?key|session_?token|^token$/i;

function unknownKeyMessage(key: string, known: readonly string[]): string {
  if (CREDENTIAL_KEY.test(key)) {
    return (
      'credentials never go in the run config; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ' +
      'AWS_PROFILE, or use the standard AWS credential chain'
    );
  }
  const guess = closestKey(key, known);
  if (guess) return `unknown key (did you mean "${guess}"?)`;
  return known.length > 0 ? `unknown key; expected one of: ${known.join(', ')}` : 'unknown key';
}

/** A known key that `key` is probably a typo of: same letters ignoring case and `_`, or 1-2 edits. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const sameWord = known.find((candidate) => squash(candidate) === squash(key));
  if (sameWord) return sameWord;
  const scored = known.map((candidate) => ({
    candidate,
    distance: editDistance(squash(key), squash(candidate)),
  }));
  const best = scored.sort((a, b) => a.distance - b.distance)[0];
  return best && best.distance <= Math.min(2, Math.floor(key.length / 3)) ? best.candidate : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The keys an object schema at `at` accepts (all branches of a union), to suggest spellings. */
function objectKeysAt(schema: z.core.$ZodType, at: readonly PropertyKey[]): string[] {
  return [...new Set(objectSchemasAt(schema, at).flatMap((object) => Object.keys(object.shape)))];
}

function objectSchemasAt(schema: z.core.$ZodType, at: readonly PropertyKey[]): z.ZodObject[] {
  if (
    schema instanceof z.ZodOptional ||
    schema instanceof z.ZodNullable ||
    schema instanceof z.ZodDefault ||
    schema instanceof z.ZodPrefault
  ) {
    return objectSchemasAt(schema.unwrap(), at);
  }
  if (schema instanceof z.ZodPipe)
    return [...objectSchemasAt(schema.in, at), ...objectSchemasAt(schema.out, at)];
  if (schema instanceof z.ZodUnion) return schema.options.flatMap((option) => objectSchemasAt(option, at));
  const [head, ...rest] = at;
  if (schema instanceof z.ZodObject) {
    if (head === undefined) return [schema];
    const child = schema.shape[String(head)];
    return child ? objectSchemasAt(child, rest) : [];
  }
  if (schema instanceof z.ZodArray && typeof head === 'number') return objectSchemasAt(schema.element, rest);
  return [];
}

// ---------------------------------------------------------------------------------------------
// Parsing YAML and JSON, with positions for messages.

export type RunConfigFormat = 'yaml' | 'json';

interface ParsedText {
  value: unknown;
  /** Line and column of the field at a path, or of its closest existing parent. */
  locate: (at: readonly PropertyKey[]) => { line: number; column: number } | undefined;
}

function detectFormat(fileName: string, text: string): RunConfigFormat {
  const ext = path.extname(fileName).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  return text.trimStart().startsWith('{') ? 'json' : 'yaml';
}

function parseText(text: string, fileName: string, format: RunConfigFormat): ParsedText {
  const lineCounter = new LineCounter();
  // `merge: true` lets users share settings with YAML anchors and `<<: *defaults`.
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: true });
  const locate = (at: readonly PropertyKey[]) => locateInDocument(doc, lineCounter, at);
  if (format === 'json') return { value: parseJson(text, fileName), locate };
  if (doc.errors.length > 0) throw new RunConfigError(fileName, doc.errors.map(yamlSyntaxIssue));
  return { value: doc.toJS(), locate };
}

/** JSON.parse, so JSON keeps JSON's rules; the YAML document above only supplies positions. */
function parseJson(text: string, fileName: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const offset = /at position (\d+)/.exec(message);
    const position = offset ? positionOfOffset(text, Number(offset[1])) : {};
    throw new RunConfigError(fileName, [{ path: '', message: `JSON syntax error: ${message}`, ...position }]);
  }
}

function positionOfOffset(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, column: (before.at(-1)?.length ?? 0) + 1 };
}

function yamlSyntaxIssue(error: {
  message: string;
  linePos?: [{ line: number; col: number }, ...unknown[]];
}) {
  // The yaml library appends " at line L, column C:" and a code frame; we report the position apart.
  const message = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
  const at = error.linePos?.[0];
  return {
    path: '',
    message: `YAML syntax error: ${message}`,
    ...(at ? { line: at.line, column: at.col } : {}),
  };
}

function locateInDocument(doc: Document, lineCounter: LineCounter, at: readonly PropertyKey[]) {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  let found = 0;
  for (const segment of at) {
    if (isMap(node)) {
      const pair = node.items.find(
        (item) => isScalar(item.key) && String(item.key.value) === String(segment),
      );
      if (!pair) break;
      offset = rangeStart(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
      node = node.items[segment];
      offset = rangeStart(node) ?? offset;
    } else {
      break;
    }
    found++;
  }
  // Whole-file problems and missing top-level keys have no better place than "line 1", which
  // only distracts.
  if (offset === undefined || found === 0) return undefined;
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range?.[0];
}

// ---------------------------------------------------------------------------------------------
// Loading.

export interface LoadRunConfigOptions {
  /** Folder for relative paths; default: the folder of `fileNameForErrors`. */
  baseDir?: string;
  /** Default: from the file extension (.yaml, .yml, .json), else sniffed from the text. */
  format?: RunConfigFormat;
}

/**
 * Parses and validates a run config. Returns it with defaults filled in and locations made absolute,
 * or throws a `RunConfigError` listing every problem with its field path.
 */
export function loadRunConfig(
  text: string,
  fileNameForErrors: string,
  options: LoadRunConfigOptions = {},
): RunConfig {
  const source = text.replace(/^\uFEFF/, '');
  const parsed = parseText(
    source,
    fileNameForErrors,
    options.format ?? detectFormat(fileNameForErrors, source),
  );
  if (parsed.value === null || parsed.value === undefined) {
    throw new RunConfigError(fileNameForErrors, [
      {
        path: '',
        message: 'the file is empty; expected a run config with at least run, images, output and models',
      },
    ]);
  }
  const baseDir = options.baseDir ?? path.dirname(path.resolve(fileNameForErrors));
  const schema = createRunConfigSchema({ baseDir });
  const result = schema.safeParse(parsed.value, { reportInput: true, error: fallbackMessage });
  if (result.success) return result.data;
  const issues = toRawIssues(result.error.issues, [], schema).map(({ at, message }) => ({
    path: dottedPath(at),
    message,
    ...parsed.locate(at),
  }));
  throw new RunConfigError(fileNameForErrors, issues);
}

/** Reads, parses and validates a run config file; relative paths in it are relative to its folder. */
export async function loadRunConfigFile(
  file: string,
  options: LoadRunConfigOptions = {},
): Promise<RunConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new RunConfigReadError(file, error);
  }
  return loadRunConfig(text, file, { baseDir: path.dirname(path.resolve(file)), ...options });
}

/** The resolved config as YAML (valid as a config file itself) or JSON. */
export function formatRunConfig(config: RunConfig, format: RunConfigFormat): string {
  if (format === 'json') return `${JSON.stringify(config, null, 2)}\n`;
  // lineWidth 0: never fold long strings (URIs) across lines.
  return stringify(config, { lineWidth: 0 });
}
