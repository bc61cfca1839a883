// Where a running dev stack (Temporal dev server + S3-compatible server) can be reached.
// Written to .sa-engine/dev.json by `sa-engine dev up` and provided to integration tests.
export interface TemporalEndpoint {
  /** gRPC frontend, host:port */
  address: string;
  namespace: string;
  /** Temporal Web UI base URL */
  uiUrl: string;
}

export interface S3Endpoint {
  /** http://127.0.0.1:port */
  endpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface StackInfo {
  temporal: TemporalEndpoint;
  s3: S3Endpoint;
}
