"""The worker's probes (HealthServer): /healthz while the process lives, /readyz as the worker says;
and what a training activity raises when its worker's shutdown, not its workflow, cancelled it."""

import json
import urllib.error
import urllib.request

import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from sae_trainer.storage import open_store
from sae_trainer.worker import HealthServer, train_sam
from worker_helpers import train_input, training_bucket


@pytest.fixture
def store_uri(coco_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SAE_TRAINER_WORKDIR", str(tmp_path / "work"))
    return training_bucket(coco_dir, tmp_path)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_readiness():
    state = {"ready": False}
    server = HealthServer(0, host="127.0.0.1", ready=lambda: state["ready"])
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        assert get(f"{server.url}/healthz") == (200, {"status": "ok"})
        assert get(f"{server.url}/readyz") == (503, {"status": "not ready"})
        state["ready"] = True
        assert get(f"{server.url}/readyz") == (200, {"status": "ready"})
        assert get(f"{server.url}/readyz?verbose=1")[0] == 200
        state["ready"] = False  # SIGTERM: draining
        assert get(f"{server.url}/readyz")[0] == 503
        assert get(f"{server.url}/healthz")[0] == 200
        assert get(f"{server.url}/metrics")[0] == 404
    finally:
        server.close()


def test_a_readiness_check_that_fails_reads_as_not_ready():
    def broken():
        raise RuntimeError("worker gone")

    server = HealthServer(0, host="127.0.0.1", ready=broken)
    try:
        assert get(f"{server.url}/readyz") == (503, {"status": "not ready"})
        assert get(f"{server.url}/healthz")[0] == 200
    finally:
        server.close()


def cancel_on_first_train_beat(env, details):
    def on_heartbeat(beat):
        if beat.get("phase") == "train":
            env.cancel(cancellation_details=details)
    env.on_heartbeat = on_heartbeat


def test_a_shutdown_cancel_is_a_retryable_failure_with_the_checkpoint_kept(store_uri):
    env = ActivityEnvironment()
    cancel_on_first_train_beat(env, ActivityCancellationDetails(worker_shutdown=True))
    with pytest.raises(ApplicationError) as err:
        env.run(train_sam, train_input(store_uri, steps=3))
    assert err.value.type == "WorkerShutdown" and not err.value.non_retryable
    assert "the worker shut down" in str(err.value)
    # The next attempt, on another worker, resumes from here.
    assert open_store(f"{store_uri}/registry").exists("ref/v1/train/checkpoint.pt")


def test_a_cancel_the_workflow_asked_for_stays_a_cancellation(store_uri):
    env = ActivityEnvironment()
    # Asked for by the workflow while the worker was also shutting down: the workflow's wish wins.
    cancel_on_first_train_beat(env, ActivityCancellationDetails(cancel_requested=True, worker_shutdown=True))
    with pytest.raises(CancelledError):
        env.run(train_sam, train_input(store_uri, steps=3))
