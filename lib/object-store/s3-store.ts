// s3://bucket/prefix backend over @aws-sdk/client-s3, for AWS S3 and S3-compatible servers
// (versitygw in the dev stack). Every SDK error is translated into the typed errors of errors.ts.
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import {
  AccessDeniedError,
  BucketNotFoundError,
  InvalidCredentialsError,
  ObjectNotFoundError,
  ObjectStoreError,
  UnsupportedOperationError,
} from './errors.ts';
import { assertValidKey, assertValidPrefix, pageSizeOf } from './keys.ts';
import type { ListOptions, ObjectBody, ObjectHead, ObjectInfo, ObjectStore, PutOptions } from './types.ts';

export interface S3Options {
  /** e.g. http://127.0.0.1:7070 for an S3-compatible server; default: env SAE_S3_ENDPOINT, else AWS. */
  endpoint?: string;
  /** Default: env AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
  region?: string;
  /** Both or neither; default: the standard AWS credential chain (env, profile, SSO, IMDS...). */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Default: true when a custom endpoint is set (local servers have no per-bucket DNS names). */
  forcePathStyle?: boolean;
  /** Give up on a TCP connection not made within this; default DEFAULT_S3_CONNECTION_TIMEOUT_MS. */
  connectionTimeoutMs?: number;
  /**
   * Give up on a request whose socket stays silent this long (no response yet, or a body that
   * stopped mid-way); default DEFAULT_S3_IDLE_TIMEOUT_MS. The SDK retries, then the error is
   * retryable, so a stalled GET fails the attempt instead of holding a shard forever.
   */
  idleTimeoutMs?: number;
}

export const DEFAULT_S3_CONNECTION_TIMEOUT_MS = 10_000;
/** S3 answers in well under a second; a minute of silence is a stalled request, not a slow one. */
export const DEFAULT_S3_IDLE_TIMEOUT_MS = 60_000;

/** Bodies above one part, and all streams, go through multipart Upload; the rest is one PUT. */
const PART_SIZE = 8 * 1024 * 1024;
/** Parts in flight per upload; bounds memory at PART_SIZE * QUEUE_SIZE. */
const QUEUE_SIZE = 4;
/** S3 answers 409 ConditionalRequestConflict while another conditional write races ours; retry. */
const CONDITIONAL_ATTEMPTS = 3;

const CREDENTIAL_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'InvalidToken',
  'ExpiredToken',
  'InvalidClientTokenId',
  'CredentialsProviderError',
  'XAdminUserNotFound', // versitygw: unknown access key id (sent with HTTP 404)
]);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE']);

export class S3ObjectStore implements ObjectStore {
  readonly rootUri: string;
  readonly bucket: string;
  /** '' or a prefix ending in '/'. */
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly endpoint: string;
  private readonly idleTimeoutMs: number;
  /** Set once a listing of the root succeeded: bucket and credentials are fine (see head()). */
  private bucketVerified = false;

  constructor(bucket: string, prefix: string, options: S3Options = {}) {
    this.bucket = bucket;
    this.prefix = prefix === '' || prefix.endsWith('/') ? prefix : prefix + '/';
    this.rootUri = `s3://${bucket}/${this.prefix}`;
    const config = clientConfig(options, this.rootUri);
    this.endpoint = typeof config.endpoint === 'string' ? config.endpoint : 'AWS S3';
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_S3_IDLE_TIMEOUT_MS;
    this.client = new S3Client(config);
  }

  uri(key: string): string {
    if (key === '') return this.rootUri;
    assertValidKey(key, this.rootUri);
    return this.rootUri + key;
  }

  async get(key: string): Promise<Buffer> {
    return this.call(key, 'get', async () => {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      const bytes = await res.Body!.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    });
  }

  async getStream(key: string): Promise<Readable> {
    const res = await this.call(key, 'get', () =>
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
    );
    // In Node the SDK body is an http.IncomingMessage (a Readable) with helper methods mixed in.
    if (!(res.Body instanceof Readable)) {
      throw new ObjectStoreError(`get ${this.uri(key)}: response body is not a Node stream`, {
        uri: this.uri(key),
      });
    }
    return res.Body;
  }

  async put(key: string, body: ObjectBody, options: PutOptions = {}): Promise<void> {
    await this.call(key, 'put', () => this.send(key, body, options, false));
  }

  async putIfAbsent(key: string, body: ObjectBody, options: PutOptions = {}): Promise<boolean> {
    const replayable = !(body instanceof Readable);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(key, body, options, true);
        return true;
      } catch (err) {
        const { code, status } = describe(err);
        if (code === 'PreconditionFailed' || status === 412) return false;
        const conflict = code === 'ConditionalRequestConflict' || status === 409;
        if (conflict && replayable && attempt < CONDITIONAL_ATTEMPTS) continue;
        throw this.translate(err, key, 'putIfAbsent');
      }
    }
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const res = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      return {
        size: res.ContentLength ?? 0,
        etag: res.ETag,
        lastModified: res.LastModified,
        contentType: res.ContentType,
      };
    } catch (err) {
      const { status } = describe(err);
      if (status !== 404 && status !== 403) throw this.translate(err, key, 'head');
      // HEAD responses have no body, so this 404/403 carries no S3 error code: it may mean a missing
      // key, a missing bucket or bad credentials. A listing (which has a body) tells them apart.
      await this.probeBucket(key);
      if (status === 404) return undefined;
      throw this.translate(err, key, 'head');
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  async *list(prefix = '', options: ListOptions = {}): AsyncIterable<ObjectInfo[]> {
    assertValidPrefix(prefix, this.rootUri);
    let token: string | undefined;
    do {
      const res = await this.call(prefix, 'list', () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            MaxKeys: pageSizeOf(options),
            ContinuationToken: token,
            StartAfter: options.startAfter === undefined ? undefined : this.prefix + options.startAfter,
          }),
        ),
      );
      const page = (res.Contents ?? []).flatMap((o) => this.toInfo(o));
      if (page.length > 0) yield page;
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async *listKeys(prefix = '', options?: ListOptions): AsyncIterable<string> {
    for await (const page of this.list(prefix, options)) {
      for (const info of page) yield info.key;
    }
  }

  async delete(key: string): Promise<void> {
    await this.call(key, 'delete', () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private fullKey(key: string): string {
    assertValidKey(key, this.rootUri);
    return this.prefix + key;
  }

  /** One PUT for small in-memory bodies; multipart Upload for streams and big buffers. */
  private async send(key: string, body: ObjectBody, options: PutOptions, ifAbsent: boolean): Promise<void> {
    const params = {
      Bucket: this.bucket,
      Key: this.fullKey(key),
      ContentType: options.contentType,
      // Upload passes this to CompleteMultipartUpload too, so big conditional writes work as well.
      IfNoneMatch: ifAbsent ? '*' : undefined,
    };
    const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    if (data instanceof Readable || data.byteLength > PART_SIZE) {
      const upload = new Upload({
        client: this.client,
        params: { ...params, Body: data },
        partSize: PART_SIZE,
        queueSize: QUEUE_SIZE,
      });
      await upload.done();
      return;
    }
    await this.client.send(new PutObjectCommand({ ...params, Body: data }));
  }

  /** Keys that end in '/' are "folder" markers made by consoles, not objects: they are skipped. */
  private toInfo(o: { Key?: string; Size?: number; ETag?: string; LastModified?: Date }): ObjectInfo[] {
    if (o.Key === undefined || o.Key.endsWith('/')) return [];
    return [
      { key: o.Key.slice(this.prefix.length), size: o.Size ?? 0, etag: o.ETag, lastModified: o.LastModified },
    ];
  }

  /** Throws the precise error (missing bucket, bad credentials) if a listing of the root fails. */
  private async probeBucket(key: string): Promise<void> {
    if (this.bucketVerified) return;
    try {
      await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 1 }),
      );
      this.bucketVerified = true;
    } catch (err) {
      const error = this.translate(err, key, 'head');
      // Without a list grant the probe says nothing about the key; let the HEAD answer stand.
      if (error instanceof AccessDeniedError && !(error instanceof InvalidCredentialsError)) return;
      throw error;
    }
  }

  private async call<T>(key: string, op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.translate(err, key, op);
    }
  }

  /** Maps SDK, HTTP and socket errors onto the typed errors, naming the object URI. */
  private translate(err: unknown, key: string, op: string): ObjectStoreError {
    if (err instanceof ObjectStoreError) return err;
    const uri = this.prefix + key === '' ? `s3://${this.bucket}` : `s3://${this.bucket}/${this.prefix}${key}`;
    const { code, status, message } = describe(err);
    if (code === 'NoSuchKey') return new ObjectNotFoundError(uri, err);
    if (code === 'NoSuchBucket') return new BucketNotFoundError(this.bucket, err);
    if (CREDENTIAL_CODES.has(code)) {
      return new InvalidCredentialsError(uri, credentialHint(code, message), err);
    }
    if (code === 'AccessDenied' || status === 403) {
      // HEAD responses have no body, so a 403 there cannot tell bad credentials from a missing grant.
      const detail =
        code === 'AccessDenied' ? message : `HTTP 403 on ${op} (bad credentials or missing permission)`;
      return new AccessDeniedError(uri, detail, err);
    }
    if (code === 'NotImplemented' || status === 501) {
      return new UnsupportedOperationError(
        uri,
        op,
        `the server at ${this.endpoint} does not implement it`,
        err,
      );
    }
    if (code === 'TimeoutError') {
      return new ObjectStoreError(
        `${op} ${uri}: no data from ${this.endpoint} for ${this.idleTimeoutMs} ms, gave up (TimeoutError)`,
        { uri, retryable: true, cause: err },
      );
    }
    if (NETWORK_CODES.has(code)) {
      return new ObjectStoreError(`${op} ${uri}: cannot reach ${this.endpoint} (${code})`, {
        uri,
        retryable: true,
        cause: err,
      });
    }
    const retryable = status === undefined || status >= 500 || status === 429;
    return new ObjectStoreError(`${op} ${uri} failed: ${code}: ${message}`, { uri, retryable, cause: err });
  }
}

function clientConfig(options: S3Options, rootUri: string): S3ClientConfig {
  const endpoint = options.endpoint ?? nonEmpty(process.env.SAE_S3_ENDPOINT);
  const region =
    options.region ?? nonEmpty(process.env.AWS_REGION) ?? nonEmpty(process.env.AWS_DEFAULT_REGION);
  const idle = options.idleTimeoutMs ?? DEFAULT_S3_IDLE_TIMEOUT_MS;
  const config: S3ClientConfig = {
    region: region ?? 'us-east-1',
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    // Without these the SDK waits for ever on a server that accepted the connection and went quiet.
    // An idle (socket) timeout, not a whole-request one: long transfers that keep moving go on.
    requestHandler: {
      connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_S3_CONNECTION_TIMEOUT_MS,
      socketTimeout: idle,
    },
  };
  if (endpoint !== undefined) config.endpoint = endpoint;
  if ((options.accessKeyId === undefined) !== (options.secretAccessKey === undefined)) {
    throw new InvalidCredentialsError(rootUri, 'give both accessKeyId and secretAccessKey, or neither');
  }
  if (options.accessKeyId !== undefined && options.secretAccessKey !== undefined) {
    config.credentials = {
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      sessionToken: options.sessionToken,
    };
  }
  return config;
}

function credentialHint(code: string, message: string): string {
  if (code === 'CredentialsProviderError') {
    return 'no credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or pass s3.accessKeyId/secretAccessKey';
  }
  return `${code}: ${message}`;
}

/** The parts of an SDK (or socket) error we branch on. */
function describe(err: unknown): { code: string; status: number | undefined; message: string } {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    name?: unknown;
    code?: unknown;
    Code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: number };
  };
  // Socket errors carry an errno-style `code`; S3 service errors carry the S3 code in `name`/`Code`.
  const code =
    [e.code, e.Code, e.name].find((c): c is string => typeof c === 'string' && c !== 'Error') ?? 'Error';
  const message = typeof e.message === 'string' ? e.message : String(err);
  return { code, status: e.$metadata?.httpStatusCode, message };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
