# sa-engine's Python trainer (trainer/): the Temporal worker of the `sae-gpu-training` queue,
# `python -m sae_trainer worker`, training and measuring SAM and the stage-2 detector with PyTorch.
#
#   docker build -f infra/docker/trainer.Dockerfile -t sa-engine-trainer .      (context: repo root)
#   docker run --rm --gpus all -e TEMPORAL_ADDRESS=temporal:7233 sa-engine-trainer
#
# Why python:3.11-slim and not an nvidia/cuda base: the lock's torch 2.5.1 is PyPI's Linux wheel,
# a CUDA 12.4 build that brings its CUDA runtime as the nvidia-*-cu12 wheels the lock pins (cuBLAS,
# cuDNN 9.1, cuFFT, NCCL, ...; see infra/install-python.sh). From the host it needs only the NVIDIA
# driver (R525 or later for CUDA 12.x), which the NVIDIA container toolkit or the Kubernetes device
# plugin mounts in. An nvidia/cuda base would add a second copy of those libraries (GBs) that torch
# does not load. Python 3.11: the lock was resolved for it (trainer/pyproject.toml).
#
# What the image expects at run time:
#   - runs as uid:gid 10001:10001 (user `sae`); nothing in /app or /opt/venv is writable by it.
#   - Temporal: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, and TEMPORAL_API_KEY or TEMPORAL_TLS_* files
#     mounted from a Secret. Storage: SAE_S3_ENDPOINT (S3-compatible servers), AWS_REGION, and
#     credentials from boto3's default chain (an IAM role / IRSA; no keys are baked in).
#   - SAE_TRAIN_DEVICE (default auto: the GPU when torch sees one; `cuda` makes a host without one
#     fail at start rather than train on the CPU).
#   - writable: HOME (/home/sae here): the work files (datasets, checkpoints; size it for the training
#     set) go to ~/.cache/sa-engine/trainer-work, or SAE_TRAINER_WORKDIR. With
#     readOnlyRootFilesystem, point HOME at a writable volume, as infra/helm/sa-engine does
#     (HOME=/tmp, an emptyDir).
#   - SIGTERM: polling stops, the activity in flight gets --shutdown-grace seconds
#     (SAE_SHUTDOWN_GRACE_SECONDS, default 300) to finish, then stops at a step with its checkpoint
#     uploaded and is retried elsewhere. terminationGracePeriodSeconds must be longer than the grace.
#
# The base is pinned by exact tag. Digests cannot be resolved where this file was written; a
# release pipeline pins it by passing the digest:
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: the locked environment -------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY trainer/requirements.lock /tmp/requirements.lock
# Wheels only (every pin of the lock has a manylinux x86_64 wheel for CPython 3.11): nothing is
# compiled, so the build stage needs no compiler. The import line is install-python.sh's check.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: -r /tmp/requirements.lock \
 && /opt/venv/bin/python -c 'import torch, segment_anything, onnxruntime, pycocotools, cv2, temporalio, boto3, jsonschema'

# ---- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 sae \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/sae --create-home \
      --shell /usr/sbin/nologin sae

COPY --from=build /opt/venv /opt/venv
COPY trainer/sae_trainer/ /app/trainer/sae_trainer/
RUN /opt/venv/bin/python -m compileall -q /app/trainer/sae_trainer

WORKDIR /app/trainer
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/trainer \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/sae \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER 10001:10001

# The worker's command line loads as its user (torch, temporalio, the activities' contract).
RUN python -m sae_trainer worker --help > /dev/null \
 && python -c 'import sae_trainer.worker'

EXPOSE 8080
# /healthz of --health-port (python's urllib: no curl in the slim image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["python", "-m", "sae_trainer"]
CMD ["worker", "--health-port", "8080"]
