"""`python -m sae_trainer worker` as a pod runs it, against a real Temporal dev server: its probes,
and SIGTERM. With grace enough, the training in flight finishes and the process exits 0; with too
little, the training stops at a step, uploads its checkpoint and fails as WorkerShutdown, which the
workflow retries (on another worker, from that checkpoint).

Uses the dev server `infra/install-tools.sh` builds (or SAE_TEMPORAL_BIN); skipped without it.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from sae_trainer.storage import open_store
from worker_helpers import TEMPORAL, TRAINER, free_port, probe, train_input, training_bucket

pytestmark = pytest.mark.skipif(TEMPORAL is None, reason="temporal dev server not installed "
                                "(infra/install-tools.sh)")


@workflow.defn(sandboxed=False)
class TrainOnce:
    """trainSam by name on the given queue, retried as the TS workflows retry it."""

    @workflow.run
    async def run(self, queue: str, inp: dict) -> dict:
        return await workflow.execute_activity(
            "trainSam", inp, task_queue=queue, start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=30), maximum_attempts=5))


@pytest.fixture
def store_uri(coco_dir, tmp_path):
    return training_bucket(coco_dir, tmp_path)


class TrainerProcess:
    def __init__(self, address: str, queue: str, grace: float, tmp_path):
        self.port = free_port()
        self.log_path = tmp_path / "trainer.log"
        env = {**os.environ, "SAE_TRAINER_WORKDIR": str(tmp_path / "work"), "SAE_TORCH_THREADS": "1",
               "PYTHONUNBUFFERED": "1", "SAE_SHUTDOWN_GRACE_SECONDS": str(grace)}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sae_trainer", "worker", "--address", address,
                 "--task-queue", queue, "--health-port", str(self.port), "--device", "cpu"],
                cwd=TRAINER, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    async def wait_ready(self, timeout=120.0):
        deadline = time.monotonic() + timeout
        while probe(self.port, "/readyz") != 200:
            assert self.proc.poll() is None, f"the worker exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"not ready in {timeout} s:\n{self.log()}"
            await asyncio.sleep(0.2)
        assert probe(self.port, "/healthz") == 200
        assert "sae-trainer worker:" in self.log()

    async def wait_exit(self, timeout=120.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the worker did not exit in {timeout} s:\n{self.log()}")
            await asyncio.sleep(0.2)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def until(check, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def scenario(tmp_path, store_uri, steps: int, grace: float, after_sigterm):
    async def run():
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=TEMPORAL,
                                                    dev_server_extra_args=["--log-level", "error"])
        async with env:
            queue = f"training-{uuid.uuid4().hex[:8]}"
            trainer = TrainerProcess(env.client.service_client.config.target_host, queue, grace, tmp_path)
            try:
                await trainer.wait_ready()
                async with Worker(env.client, task_queue=f"{queue}-wf", workflows=[TrainOnce]):
                    handle = await env.client.start_workflow(
                        TrainOnce.run, args=[queue, train_input(store_uri, steps)],
                        id=f"train-{queue}", task_queue=f"{queue}-wf")
                    registry = open_store(f"{store_uri}/registry")
                    # Training has started once its first step's checkpoint is uploaded.
                    await until(lambda: registry.exists("ref/v1/train/checkpoint.pt"),
                                what=f"the first checkpoint\n{trainer.log()}")
                    trainer.proc.send_signal(signal.SIGTERM)
                    return await after_sigterm(trainer, handle, registry)
            finally:
                trainer.kill()

    return asyncio.run(run())


def test_sigterm_lets_the_training_in_flight_finish(tmp_path, store_uri):
    async def after_sigterm(trainer, handle, registry):
        # Draining: alive, but no longer ready (a rollout stops counting it).
        await until(lambda: probe(trainer.port, "/readyz") == 503, timeout=10, what="/readyz 503")
        assert probe(trainer.port, "/healthz") == 200
        result = await handle.result()
        assert result["steps"] == 6 and registry.exists("ref/v1/model.json")
        assert await trainer.wait_exit() == 0
        log = trainer.log()
        assert "SIGTERM: polling stopped; an activity in flight has 120 s" in log
        assert "sae-trainer worker: stopped" in log

    scenario(tmp_path, store_uri, steps=6, grace=120, after_sigterm=after_sigterm)


def test_sigterm_past_the_grace_hands_the_training_back_for_a_retry(tmp_path, store_uri):
    async def after_sigterm(trainer, handle, registry):
        sent = time.monotonic()
        assert await trainer.wait_exit() == 0
        # Stopped at a step boundary soon after the 1 s grace, not at the end of 2000 steps.
        assert time.monotonic() - sent < 60
        desc = await handle.describe()
        [pending] = desc.raw_description.pending_activities
        failure = pending.last_failure
        assert pending.attempt == 2, pending
        assert failure.application_failure_info.type == "WorkerShutdown", failure
        assert not failure.application_failure_info.non_retryable
        assert "cancelled at step" in failure.message
        # The next attempt resumes from the step the stopped one reached.
        assert registry.exists("ref/v1/train/checkpoint.pt")
        await handle.terminate("test over")

    scenario(tmp_path, store_uri, steps=2000, grace=1, after_sigterm=after_sigterm)
