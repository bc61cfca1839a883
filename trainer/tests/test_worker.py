"""trainSam / evaluateSam activities on a file:// store, run in temporalio's ActivityEnvironment."""

import argparse
import json
import os

import pytest
import torch
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from sae_trainer.storage import open_store
from sae_trainer.worker import evaluate_sam, main as worker_main, train_sam


@pytest.fixture
def store_uri(coco_dir, tmp_path, monkeypatch):
    """A bucket holding the synthetic dataset under datasets/syn/ and a manifest for it."""
    monkeypatch.setenv("SAE_TRAINER_WORKDIR", str(tmp_path / "work"))
    uri = f"file://{tmp_path / 'bucket'}"
    store = open_store(uri)
    for d, _, files in os.walk(coco_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(d, name), coco_dir)
            store.upload(os.path.join(d, name), f"datasets/syn/{rel}")
    # No imagesPrefix: file_name ("images/...") is relative to the annotations' folder.
    manifest = {"format": "coco-instances/1", "annotations": "datasets/syn/annotations.json"}
    store.put_bytes("datasets/syn/manifest.json", json.dumps(manifest).encode())
    return uri


def train_input(store_uri, **kw):
    return {"storage": store_uri, "trainingSet": "datasets/syn/manifest.json", "modelName": "ref",
            "version": 1, "steps": 2, "batchSize": 2, "masksPerImage": 2, "numPoints": 1,
            "checkpointEvery": 1, "model": {"imageSize": 128}, **kw}


def test_train_then_evaluate(store_uri):
    env, beats = ActivityEnvironment(), []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    result = env.run(train_sam, train_input(store_uri))
    assert result["model"] == "models/ref/v1" and result["steps"] == 2
    store = open_store(store_uri)
    for name in ("model.json", "encoder.onnx", "decoder.onnx", "decoder_batched.onnx",
                 "checkpoint.pt", "train/checkpoint.pt"):
        assert store.exists(f"models/ref/v1/{name}"), name
    meta = json.loads(store.get_bytes("models/ref/v1/model.json"))
    assert meta["name"] == "ref" and meta["version"] == "v1"
    assert meta["lineage"]["training_data"]["manifest"] == "datasets/syn/manifest.json"
    assert meta["lineage"]["steps"] == 2
    assert {b["phase"] for b in beats} >= {"download", "train", "export"}
    assert [b["step"] for b in beats if b["phase"] == "train"] == [1, 2]

    metrics = ActivityEnvironment().run(evaluate_sam, {
        "storage": store_uri, "model": "models/ref/v1", "dataset": "datasets/syn/manifest.json",
        "maxImages": 1, "maxMasksPerImage": 1, "maxClicks": 2})
    assert metrics["masks"] == 1 and 0 <= metrics["miou_1click"] <= 1
    assert json.loads(store.get_bytes("models/ref/v1/model.json"))["metrics"]["masks"] == 1


def test_cancellation_keeps_a_resumable_checkpoint(store_uri):
    env = ActivityEnvironment()

    def on_heartbeat(details):
        if details.get("phase") == "train":
            env.cancel()

    env.on_heartbeat = on_heartbeat
    with pytest.raises(CancelledError):
        env.run(train_sam, train_input(store_uri, steps=3))
    assert open_store(store_uri).exists("models/ref/v1/train/checkpoint.pt")


def test_bad_input_is_not_retried(store_uri):
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(train_sam, {"storage": store_uri})
    assert err.value.non_retryable and "trainingSet" in str(err.value)
    with pytest.raises(ApplicationError, match="not found"):
        ActivityEnvironment().run(train_sam, train_input(store_uri, trainingSet="nope.json"))


def test_training_runs_on_the_device_the_worker_host_names(store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_TRAIN_DEVICE", "cpu")
    ActivityEnvironment().run(train_sam, train_input(store_uri, steps=1))
    local = tmp_path / "train-checkpoint.pt"
    open_store(store_uri).download("models/ref/v1/train/checkpoint.pt", str(local))
    assert torch.load(local, weights_only=False)["train_config"]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: it can start on one")
def test_a_worker_asked_for_a_gpu_it_lacks_refuses_to_start(monkeypatch):
    monkeypatch.delenv("SAE_TRAIN_DEVICE", raising=False)
    args = argparse.Namespace(device="cuda", address="127.0.0.1:1", namespace=None, task_queue=None)
    with pytest.raises(ValueError, match="sees no GPU"):
        worker_main(args)  # before any connection: the address above answers nothing
