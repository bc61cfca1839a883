// Typed errors of the object store. Every message names the URI involved so that a log line alone
// says which object, bucket or endpoint was the problem. `retryable` tells activity code whether a
// retry can help (a missing object or bad credentials will not fix themselves; a dropped connection may).

export class ObjectStoreError extends Error {
  readonly uri: string;
  readonly retryable: boolean;

  constructor(message: string, options: { uri: string; retryable?: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.uri = options.uri;
    this.retryable = options.retryable ?? false;
  }
}

/**
 * The key does not exist (S3 NoSuchKey, or no such file under the file:// root). `what` names the
 * object in the message: "image not found: s3://..." reads better in a result line than "object".
 */
export class ObjectNotFoundError extends ObjectStoreError {
  constructor(uri: string, cause?: unknown, what = 'object') {
    super(`${what} not found: ${uri}`, { uri, cause });
  }
}

/** The bucket itself does not exist (S3 NoSuchBucket). */
export class BucketNotFoundError extends ObjectStoreError {
  readonly bucket: string;

  constructor(bucket: string, cause?: unknown) {
    super(`bucket not found: s3://${bucket} (create it first, or check the bucket name in the URI)`, {
      uri: `s3://${bucket}`,
      cause,
    });
    this.bucket = bucket;
  }
}

/** The server refused the request for these credentials (S3 AccessDenied / HTTP 403). */
export class AccessDeniedError extends ObjectStoreError {
  constructor(uri: string, detail: string, cause?: unknown) {
    super(`access denied to ${uri}: ${detail}`, { uri, cause });
  }
}

/**
 * The credentials themselves are wrong or missing (S3 InvalidAccessKeyId, SignatureDoesNotMatch,
 * versitygw XAdminUserNotFound, or no credentials found). A subclass of AccessDeniedError so one catch handles both.
 */
export class InvalidCredentialsError extends AccessDeniedError {
  constructor(uri: string, detail: string, cause?: unknown) {
    super(uri, `invalid credentials (${detail})`, cause);
  }
}

/** The key cannot name an object in this store (escapes the root, absolute, NUL byte, empty segment...). */
export class InvalidKeyError extends ObjectStoreError {
  readonly key: string;

  constructor(uri: string, key: string, reason: string) {
    super(`invalid object key ${JSON.stringify(key)} under ${uri}: ${reason}`, { uri });
    this.key = key;
  }
}

/** The backend does not implement an operation we rely on (e.g. conditional PUT with If-None-Match). */
export class UnsupportedOperationError extends ObjectStoreError {
  readonly operation: string;

  constructor(uri: string, operation: string, detail: string, cause?: unknown) {
    super(`unsupported operation ${operation} on ${uri}: ${detail}`, { uri, cause });
    this.operation = operation;
  }
}

/** The store URI itself is malformed or uses a scheme we do not know. */
export class InvalidStoreUriError extends ObjectStoreError {
  constructor(uri: string, reason: string) {
    super(`invalid object store URI ${JSON.stringify(uri)}: ${reason}`, { uri });
  }
}
