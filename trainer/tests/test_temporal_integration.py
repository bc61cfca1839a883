"""Round trip through a real Temporal dev server: a workflow calls `trainSam` then `evaluateSam` by
name on the `sae-gpu-training` queue, served by our worker's activities, with the data in a real
S3-compatible server (versitygw) when it is installed.

Uses the binaries `infra/install-tools.sh` builds (or SAE_TEMPORAL_BIN / SAE_S3_SERVER_BIN); skipped
when they are absent, since nothing can be downloaded at test time.
"""

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sae_trainer.storage import open_store
from sae_trainer.worker import TASK_QUEUE, evaluate_sam, train_sam
from worker_helpers import TEMPORAL, free_port, tool_path

VERSITYGW = tool_path("versitygw", "SAE_S3_SERVER_BIN")
pytestmark = pytest.mark.skipif(TEMPORAL is None, reason="temporal dev server not installed "
                                "(infra/install-tools.sh)")


@workflow.defn(sandboxed=False)
class RetrainWorkflow:
    """Stands in for the TS retrain workflow: activities by name, JSON in and out."""

    @workflow.run
    async def run(self, train_input: dict, eval_input: dict) -> dict:
        opts = dict(task_queue=TASK_QUEUE, start_to_close_timeout=timedelta(minutes=5),
                    heartbeat_timeout=timedelta(minutes=1))
        trained = await workflow.execute_activity("trainSam", train_input, **opts)
        metrics = await workflow.execute_activity("evaluateSam", eval_input, **opts)
        return {"trained": trained, "metrics": metrics}


@pytest.fixture
def s3_uri(tmp_path, monkeypatch):
    """s3://bucket on a local versitygw if installed, else a file:// store."""
    if VERSITYGW is None:
        yield f"file://{tmp_path / 'bucket'}"
        return
    data, meta, port = tmp_path / "s3data", tmp_path / "s3meta", free_port()
    (data / "sae-test").mkdir(parents=True)
    meta.mkdir()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sae-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sae-test-secret")
    monkeypatch.setenv("SAE_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    proc = subprocess.Popen([VERSITYGW, "--port", f"127.0.0.1:{port}", "--access", "sae-test",
                             "--secret", "sae-test-secret", "--region", "us-east-1", "--quiet",
                             "posix", "--sidecar", str(meta), str(data)])
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        yield "s3://sae-test/root"
    finally:
        proc.terminate()
        proc.wait(10)


def test_retrain_round_trip(coco_dir, s3_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_TRAINER_WORKDIR", str(tmp_path / "work"))
    store = open_store(s3_uri)
    for d, _, files in os.walk(coco_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(d, name), coco_dir).replace(os.sep, "/")
            store.upload(os.path.join(d, name), f"data/{rel}")
    store.put_bytes("data/manifest.json", json.dumps({"annotations": "data/annotations.json"}).encode())

    registry = f"{s3_uri}/registry"
    train_input = {"storage": s3_uri, "trainingSet": "data/manifest.json", "registry": registry,
                   "modelName": "it", "version": 1, "mode": "full", "steps": 1, "batchSize": 1,
                   "masksPerImage": 1, "numPoints": 1, "model": {"imageSize": 128}}
    eval_input = {"storage": s3_uri, "registry": registry, "model": "it/v1",
                  "dataset": "data/manifest.json", "maxImages": 1, "maxMasksPerImage": 1, "maxClicks": 2}

    async def scenario():
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=TEMPORAL,
                                                    dev_server_extra_args=["--log-level", "error"])
        async with env:
            with ThreadPoolExecutor(max_workers=1) as pool:
                async with Worker(env.client, task_queue=TASK_QUEUE, workflows=[RetrainWorkflow],
                                  activities=[train_sam, evaluate_sam], activity_executor=pool):
                    return await env.client.execute_workflow(
                        RetrainWorkflow.run, args=[train_input, eval_input],
                        id=f"retrain-{uuid.uuid4()}", task_queue=TASK_QUEUE)

    result = asyncio.run(scenario())
    assert result["trained"]["model"] == "it/v1" and result["trained"]["steps"] == 1
    assert result["metrics"]["masks"] == 1
    models = open_store(registry)
    meta = json.loads(models.get_bytes("it/v1/model.json"))
    assert meta["version"] == "v1" and models.exists("it/v1/decoder.onnx")
    uploaded = {f["name"]: f for f in result["trained"]["files"]}
    assert uploaded["model.json"]["bytes"] == len(models.get_bytes("it/v1/model.json"))
    assert result["trained"]["trainingSetSha256"] == hashlib.sha256(
        store.get_bytes("data/manifest.json")).hexdigest()
