// The run config's zod schema: every section, its defaults and its messages. Every object is strict,
// so a misspelled key is an error instead of a silently ignored setting, and every setting has the
// paper's or the official SAM default, so a config only names what it changes.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import { DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_PIXELS } from '../images/image-io.ts';
import { expecting, expectedGot, show, type IssueInput } from './messages.ts';

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
    /** The model registry (lib/models/registry.ts); null: `models/` under `output`. */
    registry: location.nullable().default(null),
    /**
     * Stage 2's box detector package to start from (seeds the registry's detector); null: the run
     * trains one from its stage-1 masks before the first stage-2 round.
     */
    detector: location.nullable().default(null),
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
  // TLS to a self-hosted cluster or Temporal Cloud: file paths on each process's host (the
  // TEMPORAL_TLS_* variables override them). An API key is read from TEMPORAL_API_KEY only, never
  // from a config file (lib/temporal-auth.ts).
  tls: z
    .strictObject({
      clientCertPath: z.string().min(1).optional(),
      clientKeyPath: z.string().min(1).optional(),
      serverCaCertPath: z.string().min(1).optional(),
      serverName: z.string().min(1).optional(),
    })
    .nullable()
    .default(null),
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
    /**
     * false (the paper: stage 3 ran over all 11M images): every image. true: only the images no
     * annotation round of this run took (stage 1's and stage 2's come first in the run's order).
     */
    skipAnnotated: bool().default(false),
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
    /**
     * Shards running at once (the sliding window). Each is a child workflow, and Temporal refuses
     * more than 2,000 pending children per workflow (its default limit; docs/scale.md).
     */
    maxConcurrentShards: intBetween(1, 2000).default(4),
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

// When and how stage 1 retrains SAM on its accepted masks (lib/models/trigger.ts, workflows/retrain.ts).
const MODEL_NAME_WHAT = 'a model name: lowercase letters, digits, ".", "-" or "_"';
const modelName = () =>
  z.string(expecting(MODEL_NAME_WHAT)).regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, expecting(MODEL_NAME_WHAT));

const RetrainSchema = z
  .strictObject({
    enabled: bool().default(false),
    /** The model's name in the registry: its champion assists the rounds (seeded from models.sam). */
    model: modelName().default('sam'),
    /** Retrain once this many masks were accepted since the last retrain (or since the run began)... */
    minNewMasks: intAtLeast(1).default(500),
    /** ...or once the accepted masks grew by this fraction since the last retrain (null: off). */
    minGrowth: numberAtLeast(0).nullable().default(null),
    /** No retrain sooner than this after the last one started (null: any time). */
    minInterval: duration().nullable().default(null),
    /** true: a round waits for a due retrain (and its new champion); false: it runs on the champion it has. */
    waitForRetrain: bool().default(false),
    /** decoder: fine-tune the decoder on cached embeddings (fast, the CPU default); full: the whole model. */
    mode: z.enum(['decoder', 'full'], expecting('"decoder" or "full"')).default('decoder'),
    steps: intAtLeast(1).default(200),
    batchSize: intAtLeast(1).default(4),
    masksPerImage: intAtLeast(1).default(8),
    /** Corrective clicks per mask after the first prompt (the paper: 8). */
    numPoints: intBetween(0, 20).default(8),
    lr: numberAtLeast(0).default(1e-4),
    /** Train on square windows of this side (a multiple of 16; null: whole images), cheaper on a CPU. */
    cropSize: intAtLeast(16)
      .refine((side) => side % 16 === 0, expecting('a multiple of 16 (the embedding grid)'))
      .nullable()
      .default(null),
    /** Windows this many times the longer side of the mask they hold (cropSize: the smallest). */
    cropContext: numberAtLeast(1).nullable().default(null),
    /** Share of first prompts that are boxes (the paper: 0.5). */
    boxProbability: fraction().default(0.5),
    /** Promote only when 1-click mIoU rises by at least this (δ)... */
    minGain: z.number(expecting('a number')).default(0.01),
    /** ...and NoC@90 worsens by at most this many clicks (ε). */
    maxNoc90Loss: numberAtLeast(0).default(0.5),
    /** The run's evaluation set: this share of the annotated images, chosen by image id, never trained on. */
    holdoutFraction: fraction().default(0.1),
    maxEvalImages: intAtLeast(1).default(50),
    /**
     * A promoted version's AMG thresholds (model.json amg_calibration, which stage 3 uses with
     * `thresholds: model`), measured on the evaluation set's images before the version completes.
     */
    calibration: z
      .strictObject({
        enabled: bool().default(true),
        /** The AMG runs over each one: the cost of a promotion on a CPU. */
        maxImages: intAtLeast(1).default(20),
        /** The grid it is measured with (null: stage 3's pointsPerSide). */
        pointsPerSide: intAtLeast(1).nullable().default(null),
      })
      .prefault({}),
  })
  .prefault({});

const Stage1Schema = z.strictObject({
  enabled: bool().default(false),
  /** Rounds run one after another; round k takes the next imagesPerRound images of the run. */
  rounds: intBetween(1, 1000).default(1),
  imagesPerRound: intAtLeast(1).default(100),
  /** Close a round once this many masks are accepted; null: when every task is done or at the deadline. */
  targetMasksPerRound: intAtLeast(1).nullable().default(null),
  roundDeadline: duration().default('7d'),
  /** How long a claimed task stays with its annotator without a submission. */
  lease: duration().default('15m'),
  /** float16 halves the download per image; its masks stay within 0.5% IoU of float32. */
  embeddingDtype: z.enum(['float16', 'float32']).default('float16'),
  /** Images per embedding activity, and how many of those run at once. */
  embedBatch: intBetween(1, 1000).default(8),
  embedWindow: intBetween(1, 64).default(2),
  /** Retraining between rounds (the paper: 6 retrains in stage 1), through the model registry. */
  retrain: RetrainSchema,
  /** Where `sa-engine annotate serve` (and `run --workers`) serves the annotation tool. */
  service: z
    .strictObject({
      host: z.string(expecting('a host name or IP address')).min(1).default('127.0.0.1'),
      port: intBetween(0, 65535).default(8750),
    })
    .prefault({}),
});

/**
 * Stage 2, semi-automatic rounds (paper §4): a class-agnostic box detector, trained on every mask
 * so far, prompts SAM with its boxes; the confident masks arrive pre-filled and people label what
 * is left. Its rounds take the run's next images after stage 1's and share stage 1's lease,
 * deadline, embedding and service settings.
 */
const Stage2Schema = z.strictObject({
  enabled: bool().default(false),
  /** The paper retrained the detector 5 times over stage 2: one retrain between rounds. */
  rounds: intBetween(1, 1000).default(5),
  imagesPerRound: intAtLeast(1).default(100),
  targetMasksPerRound: intAtLeast(1).nullable().default(null),
  detector: z
    .strictObject({
      /** The detector's name in the model registry. */
      model: modelName().default('detector'),
      /** Decoding its output (null: the package's own settings). */
      scoreThreshold: nullableFraction("use the detector package's").default(null),
      nmsIou: nullableFraction("use the detector package's").default(null),
      maxDetections: intAtLeast(1).nullable().default(null),
    })
    .prefault({}),
  /** Which of SAM's masks from the boxes arrive pre-filled: the automatic generator's filters. */
  prefill: z
    .strictObject({
      /** box: prompt with the detection's box (the paper); centre-point: with its centre, for a SAM never trained on boxes. */
      prompt: z.enum(['box', 'centre-point'], expecting('"box" or "centre-point"')).default('box'),
      predIouThresh: fraction().default(0.88),
      stabilityScoreThresh: fraction().default(0.95),
      boxNmsThresh: fraction().default(0.7),
      batchSize: intBetween(1, 1024).default(64),
    })
    .prefault({}),
  /** The detector's training: before the first stage-2 round, and between rounds. */
  retrain: z
    .strictObject({
      betweenRounds: bool().default(true),
      steps: intAtLeast(1).default(2000),
      batchSize: intAtLeast(1).default(16),
      lr: numberAtLeast(0).default(1e-3),
      /** Promote a retrained detector only when its held-out box AP rises by at least this. */
      minGain: z.number(expecting('a number')).default(0),
      /** The detector's evaluation set: this share of the annotated images, by id, never trained on. */
      holdoutFraction: fraction().default(0.1),
      maxEvalImages: intAtLeast(1).default(50),
    })
    .prefault({}),
});

/** Human masks an annotator means to label: the audit's sources, or BSDS-style partitions. */
function intentSchema(location: LocationSchema) {
  const partitions = z.strictObject({
    uri: location,
    // partitions: a folder of <photo>_<k>.png 16-bit label maps, one per human partition.
    format: z.literal('partitions'),
  });
  return z.union([partitions, maskSourceSchema(location)], {
    error: () => 'expected { uri, format } with format coco, png or partitions',
  });
}

function simulatedAnnotatorsSchema(location: LocationSchema) {
  return z
    .strictObject({
      enabled: bool().default(false),
      count: intBetween(1, 100).default(3),
      intent: intentSchema(location).nullable().default(null),
      // How they click and when they accept (lib/stage1/simulated-annotator.ts).
      targetIou: fraction().default(0.9),
      maxClicks: intBetween(1, 50).default(8),
      minArea: intAtLeast(0).default(100),
      maxMasksPerImage: intAtLeast(1).default(20),
      // Time is reported from this model, not measured: 4 clicks and an accept make the paper's 14 s.
      secondsPerClick: numberAtLeast(0).default(2.5),
      secondsPerAccept: numberAtLeast(0).default(4),
    })
    .superRefine((sims, ctx) => {
      if (sims.enabled && sims.intent === null) {
        ctx.addIssue({
          code: 'custom',
          path: ['intent'],
          message:
            'required when simulatedAnnotators is enabled: the masks they mean to label ({ uri, format })',
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

const SECTIONS_WITH_WORK = ['stage1', 'stage2', 'stage3', 'audit', 'release'] as const;

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
      simulatedAnnotators: simulatedAnnotatorsSchema(location).prefault({}),
      stage1: Stage1Schema.prefault({}),
      stage2: Stage2Schema.prefault({}),
      stage3: Stage3Schema.prefault({}),
      audit: auditSchema(location).prefault({}),
      release: ReleaseSchema.prefault({}),
    })
    .superRefine((config, ctx) => checkSomethingEnabled(config, ctx), {
      when: (payload) => typeof payload.value === 'object' && payload.value !== null,
    })
    .superRefine((config, ctx) => {
      if (config.stage2.enabled && !config.stage1.enabled && config.models.detector === null) {
        ctx.addIssue({
          code: 'custom',
          path: ['stage2'],
          message:
            'stage 2 needs a detector: enable stage 1 (the run trains one on its masks) or set models.detector',
        });
      }
      // Stage 3 segments with the last promoted version: it needs the calibration the retrain makes.
      const { retrain } = config.stage1;
      if (
        config.stage3.enabled &&
        config.stage3.thresholds === 'model' &&
        retrain.enabled &&
        !retrain.calibration.enabled
      ) {
        ctx.addIssue({
          code: 'custom',
          path: ['stage3', 'thresholds'],
          message:
            'is "model", but stage 3 segments with the SAM version the run promotes last, and with ' +
            'stage1.retrain.calibration.enabled false that version has no amg_calibration; enable it, or ' +
            'set thresholds to "official" with the run\'s own predIouThresh and stabilityScoreThresh',
        });
      }
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
export type Stage2Config = RunConfig['stage2'];
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
  stage1: Stage1Schema.parse({}),
  stage2: Stage2Schema.parse({}),
  simulatedAnnotators: simulatedAnnotatorsSchema(locationSchema(() => process.cwd())).parse({}),
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
