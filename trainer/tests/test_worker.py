"""trainSam / evaluateSam activities on a file:// store, run in temporalio's ActivityEnvironment."""

import argparse
import hashlib
import json
import os

import pytest
import torch
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from sae_trainer.storage import open_store
from sae_trainer.worker import (evaluate_detector_activity, evaluate_sam, main as worker_main,
                               train_detector_activity, train_sam)


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


def registry_of(store_uri):
    return f"{store_uri}/registry"


def train_input(store_uri, **kw):
    return {"storage": store_uri, "trainingSet": "datasets/syn/manifest.json",
            "registry": registry_of(store_uri), "modelName": "ref", "version": 1, "mode": "full",
            "steps": 2, "batchSize": 2, "masksPerImage": 2, "numPoints": 1, "checkpointEvery": 1,
            "model": {"imageSize": 128}, **kw}


def test_train_then_evaluate(store_uri):
    env, beats = ActivityEnvironment(), []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    result = env.run(train_sam, train_input(store_uri))
    assert result["model"] == "ref/v1" and result["steps"] == 2
    models = open_store(registry_of(store_uri))
    for name in ("model.json", "encoder.onnx", "decoder.onnx", "decoder_batched.onnx",
                 "decoder_folded.onnx", "checkpoint.pt", "train/checkpoint.pt"):
        assert models.exists(f"ref/v1/{name}"), name
    meta = json.loads(models.get_bytes("ref/v1/model.json"))
    assert meta["name"] == "ref" and meta["version"] == "v1"
    manifest = open_store(store_uri).get_bytes("datasets/syn/manifest.json")
    assert meta["lineage"]["training_data"] == {"manifest": f"{store_uri}/datasets/syn/manifest.json",
                                                "sha256": hashlib.sha256(manifest).hexdigest()}
    assert result["trainingSetSha256"] == hashlib.sha256(manifest).hexdigest()
    assert meta["lineage"]["steps"] == 2
    files = {f["name"]: f for f in result["files"]}
    assert files["decoder.onnx"]["sha256"] == hashlib.sha256(models.get_bytes("ref/v1/decoder.onnx")).hexdigest()
    assert {b["phase"] for b in beats} >= {"download", "train", "export", "upload"}
    assert [b["step"] for b in beats if b["phase"] == "train"] == [1, 2]

    metrics = ActivityEnvironment().run(evaluate_sam, {
        "storage": store_uri, "registry": registry_of(store_uri), "model": "ref/v1",
        "dataset": "datasets/syn/manifest.json", "maxImages": 1, "maxMasksPerImage": 1, "maxClicks": 2})
    assert metrics["masks"] == 1 and 0 <= metrics["miou_1click"] <= 1
    # A registry version is never written after it was made: the figures are only returned.
    assert json.loads(models.get_bytes("ref/v1/model.json")) == meta
    assert not models.exists("ref/v1/metrics.json")


def test_input_outside_the_contract_is_refused_with_the_field(store_uri):
    for bad, field in ((train_input(store_uri, stpes=3), "stpes"),
                       (train_input(store_uri, steps="2"), "steps"),
                       (train_input(store_uri, mode="fast"), "mode")):
        with pytest.raises(ApplicationError) as err:
            ActivityEnvironment().run(train_sam, bad)
        assert err.value.non_retryable and err.value.type == "ContractError" and field in str(err.value)


def test_a_training_set_naming_paths_outside_its_folder_is_refused(store_uri):
    store = open_store(store_uri)
    coco = json.loads(store.get_bytes("datasets/syn/annotations.json"))
    for name in ("../../etc/passwd", "/etc/passwd", "images/../../x.png"):
        coco["images"][0]["file_name"] = name
        store.put_bytes("datasets/syn/annotations.json", json.dumps(coco).encode())
        with pytest.raises(ApplicationError) as err:
            ActivityEnvironment().run(train_sam, train_input(store_uri))
        assert err.value.non_retryable and "not a plain relative key" in str(err.value), name


def test_cancellation_keeps_a_resumable_checkpoint(store_uri):
    env = ActivityEnvironment()

    def on_heartbeat(details):
        if details.get("phase") == "train":
            env.cancel()

    env.on_heartbeat = on_heartbeat
    with pytest.raises(CancelledError):
        env.run(train_sam, train_input(store_uri, steps=3))
    assert open_store(registry_of(store_uri)).exists("ref/v1/train/checkpoint.pt")


def test_bad_input_is_not_retried(store_uri):
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(train_sam, {"storage": store_uri})
    assert err.value.non_retryable and "'trainingSet' is a required property" in str(err.value)
    with pytest.raises(ApplicationError, match="not found"):
        ActivityEnvironment().run(train_sam, train_input(store_uri, trainingSet="nope.json"))


def test_training_runs_on_the_device_the_worker_host_names(store_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_TRAIN_DEVICE", "cpu")
    ActivityEnvironment().run(train_sam, train_input(store_uri, steps=1))
    local = tmp_path / "train-checkpoint.pt"
    open_store(registry_of(store_uri)).download("ref/v1/train/checkpoint.pt", str(local))
    assert torch.load(local, weights_only=True)["train_config"]["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU: it can start on one")
def test_a_worker_asked_for_a_gpu_it_lacks_refuses_to_start(monkeypatch):
    # Set (not deleted) so that monkeypatch undoes what worker_main writes there for later tests.
    monkeypatch.setenv("SAE_TRAIN_DEVICE", "auto")
    args = argparse.Namespace(device="cuda", address="127.0.0.1:1", namespace=None, task_queue=None)
    with pytest.raises(ValueError, match="sees no GPU"):
        worker_main(args)  # before any connection: the address above answers nothing


def detector_input(store_uri, **kw):
    return {"storage": store_uri, "trainingSet": "datasets/syn/manifest.json",
            "registry": registry_of(store_uri), "modelName": "det", "version": 1, "sam": "ref/v1",
            "steps": 3, "batchSize": 2, "checkpointEvery": 1, "width": 16, "dilations": [1],
            "decode": {"scoreThreshold": 0.05}, **kw}


def test_train_and_evaluate_the_detector_on_a_sam_versions_embeddings(store_uri):
    ActivityEnvironment().run(train_sam, train_input(store_uri))
    env, beats = ActivityEnvironment(), []
    env.on_heartbeat = lambda *d: beats.append(d[0])
    result = env.run(train_detector_activity, detector_input(store_uri))
    assert result["model"] == "det/v1" and result["steps"] == 3
    assert result["parity"]["scores"] < 1e-5 and result["parity"]["boxes"] < 1e-2  # pixels of 1024
    models = open_store(registry_of(store_uri))
    for name in ("model.json", "detector.onnx", "detector.pt", "detector_log.jsonl", "train/detector.pt"):
        assert models.exists(f"det/v1/{name}"), name
    meta = json.loads(models.get_bytes("det/v1/model.json"))
    encoder = hashlib.sha256(models.get_bytes("ref/v1/encoder.onnx")).hexdigest()
    assert meta["sam"]["model"] == "ref/v1" and meta["sam"]["encoder_onnx_sha256"] == encoder
    assert meta["decode"]["score_threshold"] == 0.05 and meta["lineage"]["sam"] == "ref/v1"
    assert {b["phase"] for b in beats} >= {"download", "train", "export", "upload"}

    metrics = ActivityEnvironment().run(evaluate_detector_activity, {
        "storage": store_uri, "registry": registry_of(store_uri), "model": "det/v1", "sam": "ref/v1",
        "dataset": "datasets/syn/manifest.json"})
    assert metrics["images"] == 6 and metrics["boxes"] > 0 and 0 <= metrics["AP"] <= 1

    # Another SAM version's embeddings mean nothing to this detector: refused, not retried, whether
    # it is evaluated on them or a new detector would continue from it on them.
    ActivityEnvironment().run(train_sam, train_input(store_uri, version=2, seed=5))
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(train_detector_activity,
                                  detector_input(store_uri, version=2, sam="ref/v2", parent="det/v1"))
    assert err.value.non_retryable and "another SAM encoder" in str(err.value)
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(evaluate_detector_activity, {
            "storage": store_uri, "registry": registry_of(store_uri), "model": "det/v1",
            "sam": "ref/v2", "dataset": "datasets/syn/manifest.json"})
    assert err.value.non_retryable and "another SAM encoder" in str(err.value)


def test_detector_cancellation_keeps_a_resumable_checkpoint(store_uri):
    ActivityEnvironment().run(train_sam, train_input(store_uri))
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *d: env.cancel() if d[0].get("phase") == "train" else None
    with pytest.raises(CancelledError):
        env.run(train_detector_activity, detector_input(store_uri))
    models = open_store(registry_of(store_uri))
    assert models.exists("det/v1/train/detector.pt") and not models.exists("det/v1/model.json")
    beats = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *d: beats.append(d[0])
    env.run(train_detector_activity, detector_input(store_uri))
    steps = [b["step"] for b in beats if b["phase"] == "train"]
    assert steps and steps[0] > 1 and steps[-1] == 3  # continued, not started over


def test_a_recreated_registry_does_not_reuse_another_versions_cached_files(tmp_path):
    """Caches on the host are keyed by the version's claim: a registry wiped and made again at the
    same URI numbers from v1 again, and its v1 is another model."""
    from sae_trainer.worker import _version_key

    uri = f"file://{tmp_path}/registry"
    models = open_store(uri)
    models.put_bytes("sam/v1/claim.json", b'{"name":"sam","version":1,"at":"2026-12-07T10:00:00Z"}\n')
    first = _version_key(models, uri, "sam/v1")
    assert _version_key(models, uri, "sam/v1") == first  # a retry: the same cache, it resumes
    models.put_bytes("sam/v1/claim.json", b'{"name":"sam","version":1,"at":"2026-12-07T11:00:00Z"}\n')
    assert _version_key(models, uri, "sam/v1") != first
    assert _version_key(models, uri, "sam/v2") != _version_key(models, uri, "sam/v1")


def test_an_evaluation_set_recreated_at_the_same_keys_does_not_reuse_the_cached_images(tmp_path):
    """Evaluation data is cached by what its annotations hold, not only where they are: a run made
    again under the same id writes other images and masks under the same keys."""
    from sae_trainer.worker import _data_key

    uri = f"file://{tmp_path}/out"
    store = open_store(uri)
    inp = {"storage": uri, "dataset": "runs/r/stage1/training/set-1/manifest.json"}
    split = {"annotations": "runs/r/stage1/training/set-1/holdout.json"}
    store.put_bytes(split["annotations"], b'{"images": [{"id": 1, "source": "a.jpg"}]}')
    first = _data_key(store, inp, split)
    assert _data_key(store, inp, split) == first  # a retry reads its own cache
    store.put_bytes(split["annotations"], b'{"images": [{"id": 1, "source": "b.jpg"}]}')
    assert _data_key(store, inp, split) != first
