# sa-engine's TypeScript side on the CPU: the Temporal workers (`sa-engine worker --queues ...`), the
# CLI and the annotation service (`sa-engine annotate serve`), all `node bin/sa-engine.mjs ...`.
# The GPU inference pool uses worker-cuda.Dockerfile; the Python trainer, trainer.Dockerfile.
#
#   docker build -f infra/docker/worker.Dockerfile -t sa-engine-worker .      (context: repo root)
#   docker run --rm -p 8080:8080 -e TEMPORAL_ADDRESS=temporal:7233 sa-engine-worker
#   docker run --rm sa-engine-worker worker --queues sae-gpu-inference --health-port 8080
#
# What the image expects at run time:
#   - runs as uid:gid 10001:10001 (user `sae`); nothing in /app is writable by it but web/dist.
#   - Temporal: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, and TEMPORAL_API_KEY or TEMPORAL_TLS_* files
#     mounted from a Secret. Storage: SAE_S3_ENDPOINT (S3-compatible servers), AWS_REGION, and AWS
#     credentials from the default chain (an IAM role; no keys are baked in).
#   - writable: HOME (/home/sae here), where the models a run names by s3:// are cached
#     (~/.cache/sa-engine, or SAE_CACHE_DIR). With readOnlyRootFilesystem, point HOME at a
#     writable volume, as infra/helm/sa-engine does (HOME=/tmp, an emptyDir).
#   - TSX_DISABLE_CACHE=1: tsx compiles the TypeScript in memory (no cache folder to write; the
#     start is no slower, measured: ~9 s of `--help` on 2 busy cores either way).
#   - `annotate serve` rebuilds the browser tool into /app/web/dist when it starts
#     (cli/annotation.ts): that folder is the user's here, but a read-only root filesystem refuses
#     the rebuild unless web/dist is a writable volume too.
#   - the worker drains on SIGTERM for --shutdown-grace seconds (SAE_SHUTDOWN_GRACE_SECONDS);
#     terminationGracePeriodSeconds must be longer.
#
# The base is pinned by exact tag. Digests cannot be resolved where this file was written; a
# release pipeline pins them by passing the digest:
#   --build-arg NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:<digest>
# Node 20.20.2 is the Node the test suite runs on (package.json engines: >=20.19).
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# ---- build: dependencies and the browser tool --------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NODE_ENV=production \
    npm_config_update_notifier=false

# Only the manifests first, so a source change does not reinstall node_modules.
COPY package.json package-lock.json ./
# --omit=dev: tsx and esbuild (the CLI runs from source, the browser tool is bundled) are runtime
# dependencies. npm installs the optional native packages for this platform, linux-x64 (glibc):
# @img/sharp-linux-x64 + @img/sharp-libvips-linux-x64, @esbuild/linux-x64, @swc/core-linux-x64-gnu;
# onnxruntime-node ships its linux/x64 CPU binaries inside its package. Its install script would
# download the CUDA provider from NuGet on linux/x64 (npm 10, bundled with Node 20, ignores
# package.json's allowScripts): skipped here, the CPU image has no use for it.
# The binaries of other systems (macOS, Windows: about 300 MB) are removed.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf node_modules/onnxruntime-node/bin/napi-v6/darwin node_modules/onnxruntime-node/bin/napi-v6/win32 \
      node_modules/@temporalio/core-bridge/releases/*-apple-darwin \
      node_modules/@temporalio/core-bridge/releases/*-windows-* \
 && node -e "require('sharp'); require('onnxruntime-node'); require('esbuild'); require('@temporalio/core-bridge')" \
 && test ! -e node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so

COPY tsconfig.json ./
COPY bin/ bin/
COPY cli/ cli/
COPY client/ client/
COPY lib/ lib/
COPY service/ service/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
COPY infra/ infra/
COPY web/ web/
# The reference SAM and detector packages, the CLI's defaults (models.sam: models/sae-ref).
COPY models/ models/

# Prebuilt, so that the image is complete as it is (the service rebuilds it at start, see above).
# Kept apart, to be copied into the runtime owned by the user that rebuilds it.
RUN npm run build:web && mv web/dist /web-dist

# ---- runtime -----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime

# ca-certificates: the Temporal client's TLS (Temporal Cloud) reads the system roots, which the
# slim image has purged. Not version-pinned: Debian's security updates should apply on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sae \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/sae --create-home \
      --shell /usr/sbin/nologin sae

WORKDIR /app
COPY --from=build /app /app
# The one folder in /app the service writes (annotate serve rebuilds the tool at start).
COPY --from=build --chown=10001:10001 /web-dist /app/web/dist

ENV NODE_ENV=production \
    HOME=/home/sae \
    TSX_DISABLE_CACHE=1

USER 10001:10001

# The CLI loads (tsx, every command module, the native addons) as the user it runs as.
RUN node bin/sa-engine.mjs --help > /dev/null

EXPOSE 8080
# /healthz of the worker's --health-port (curl is not in the slim image; Node 20 has fetch). Only
# the default command serves it: run another command with --no-healthcheck or its own probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["node", "bin/sa-engine.mjs"]
CMD ["worker", "--queues", "sae-orchestration", "--health-port", "8080"]
