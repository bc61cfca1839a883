# sa-engine's TypeScript worker for the GPU inference pool (`sa-engine worker --queues
# sae-gpu-inference`): worker.Dockerfile's image on a CUDA base, with onnxruntime-node's CUDA
# execution provider installed at build time. A run config selects it with
# `stage3.onnx.executionProvider: cuda` (README, "GPU hosts").
#
#   docker build -f infra/docker/worker-cuda.Dockerfile -t sa-engine-worker-cuda .   (context: repo root)
#   docker run --rm --gpus all -e TEMPORAL_ADDRESS=temporal:7233 sa-engine-worker-cuda
#
# Host: an NVIDIA driver for CUDA 12.8 (R570 or later; the base declares cuda>=12.8 in
# NVIDIA_REQUIRE_CUDA, which the container toolkit checks) and the NVIDIA container toolkit or the
# Kubernetes device plugin.
# The run-time contract (uid 10001, writable paths, environment, SIGTERM) is worker.Dockerfile's.
#
# Versions, and why:
#   - onnxruntime-node 1.30.0 (package-lock.json). Its install script (node_modules/onnxruntime-node/
#     script/install.js) fetches the CUDA provider for linux/x64 as the `cuda12` manifest
#     (install-metadata.js): libonnxruntime_providers_{cuda,shared,tensorrt}.so from NuGet's
#     Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0, a CUDA 12.x + cuDNN 9.x build.
#   - so the base is CUDA 12 with cuDNN 9: nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 (the
#     runtime libraries the provider loads: cudart, cuBLAS(Lt), cuFFT, cuRAND, cuDNN 9). A late 12.x
#     minor, so that no library is older than the one the provider was built against (which 12.x
#     minor 1.30.0 was built with was not checked: NuGet cannot be reached where this was written).
#     TensorRT is not in it: the TensorRT provider comes with the same manifest but cannot load.
#   - Node: the official linux-x64 binary, copied from the same node image worker.Dockerfile uses
#     (no NodeSource, no apt repository). Node's binaries need glibc >= 2.28; Ubuntu 24.04 has 2.39.
#
# Bases are pinned by exact tag; a release pipeline passes digests:
#   --build-arg NODE_IMAGE=node:20.20.2-bookworm-slim@sha256:<digest>
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:<digest>
ARG NODE_IMAGE=node:20.20.2-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- build: dependencies with the CUDA provider, and the browser tool --------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NODE_ENV=production \
    npm_config_update_notifier=false

COPY package.json package-lock.json ./
# 1. npm ci with onnxruntime-node's install script told to skip: npm 11 does not run it at all
#    (package.json's allowScripts denies it) and npm 10 would, so the download is not left to
#    whichever npm this is.
# 2. Then the script itself, with ONNXRUNTIME_NODE_INSTALL=cuda12 (the same as its flag
#    --onnxruntime-node-install=cuda12; the environment variable wins over the flag): it downloads
#    the provider libraries from NuGet into bin/napi-v6/linux/x64/, next to libonnxruntime.so.1.
#    The build host needs to reach api.nuget.org (GLOBAL_AGENT_HTTPS_PROXY for a proxy).
# 3. The build fails if the provider is not there.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so \
 && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_shared.so \
 && npm cache clean --force \
 && rm -rf node_modules/onnxruntime-node/bin/napi-v6/darwin node_modules/onnxruntime-node/bin/napi-v6/win32 \
      node_modules/@temporalio/core-bridge/releases/*-apple-darwin \
      node_modules/@temporalio/core-bridge/releases/*-windows-* \
 && node -e "require('sharp'); require('onnxruntime-node'); require('esbuild'); require('@temporalio/core-bridge')"

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
COPY models/ models/
RUN npm run build:web && mv web/dist /web-dist

# The Node binary, from the official image (checked by its digest when NODE_IMAGE carries one).
FROM ${NODE_IMAGE} AS node

# ---- runtime -----------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sae \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/sae --create-home \
      --shell /usr/sbin/nologin sae

COPY --from=node /usr/local/bin/node /usr/local/bin/node

WORKDIR /app
COPY --from=build /app /app
COPY --from=build --chown=10001:10001 /web-dist /app/web/dist

ENV NODE_ENV=production \
    HOME=/home/sae \
    TSX_DISABLE_CACHE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER 10001:10001

# The CLI loads as its user; without a GPU at build time onnxruntime-node loads its CPU provider
# (the CUDA one is loaded when a session asks for it).
RUN node bin/sa-engine.mjs --help > /dev/null

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

ENTRYPOINT ["node", "bin/sa-engine.mjs"]
CMD ["worker", "--queues", "sae-gpu-inference", "--health-port", "8080"]
