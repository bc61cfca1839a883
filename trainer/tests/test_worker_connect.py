"""The worker's settings from the environment: Temporal authentication (connect_options, the rules of
lib/temporal-auth.ts), Worker Versioning, the health port and the shutdown grace; and the S3 store's
client (the default AWS credential chain, SAE_S3_ENDPOINT, AWS_REGION)."""

import argparse

import pytest
from temporalio.common import VersioningBehavior
from temporalio.service import TLSConfig

from sae_trainer import storage
from sae_trainer.worker import (DEFAULT_SHUTDOWN_GRACE_SECONDS, connect_options,
                                describe_connection, versioning_options, worker_settings)


@pytest.fixture
def pems(tmp_path):
    files = {}
    for name in ("client.pem", "client.key", "ca.pem"):
        (tmp_path / name).write_bytes(f"-----{name}-----".encode())
        files[name] = str(tmp_path / name)
    return files


def test_nothing_set_is_plaintext():
    assert connect_options({}) == {}
    # Empty values are unset (a chart that always sets the variable, empty when unused).
    assert connect_options({"TEMPORAL_API_KEY": "", "TEMPORAL_TLS_CLIENT_CERT_PATH": " "}) == {}
    assert connect_options({"TEMPORAL_TLS": "false"}) == {}
    assert describe_connection({}) == "plaintext"


def test_tls_switch_alone_uses_the_system_roots():
    for value in ("true", "1", "TRUE"):
        assert connect_options({"TEMPORAL_TLS": value}) == {"tls": True}
    assert describe_connection({"tls": True}) == "TLS"
    with pytest.raises(ValueError, match="TEMPORAL_TLS must be true or false"):
        connect_options({"TEMPORAL_TLS": "yes"})


def test_api_key_implies_tls():
    options = connect_options({"TEMPORAL_API_KEY": "secret-key"})
    assert options == {"tls": True, "api_key": "secret-key"}
    assert describe_connection(options) == "TLS + API key"
    assert "secret-key" not in describe_connection(options)
    with pytest.raises(ValueError, match="TEMPORAL_TLS=false"):
        connect_options({"TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "false"})


def test_mtls_reads_the_pair_the_ca_and_the_server_name(pems):
    options = connect_options({"TEMPORAL_TLS_CLIENT_CERT_PATH": pems["client.pem"],
                               "TEMPORAL_TLS_CLIENT_KEY_PATH": pems["client.key"],
                               "TEMPORAL_TLS_SERVER_CA_CERT_PATH": pems["ca.pem"],
                               "TEMPORAL_TLS_SERVER_NAME": "frontend.temporal.internal"})
    assert options == {"tls": TLSConfig(client_cert=b"-----client.pem-----",
                                        client_private_key=b"-----client.key-----",
                                        server_root_ca_cert=b"-----ca.pem-----",
                                        domain="frontend.temporal.internal")}
    assert describe_connection(options) == "mTLS"


def test_a_private_ca_alone_is_tls_without_a_client_certificate(pems):
    options = connect_options({"TEMPORAL_TLS_SERVER_CA_CERT_PATH": pems["ca.pem"]})
    assert options == {"tls": TLSConfig(server_root_ca_cert=b"-----ca.pem-----")}
    assert describe_connection(options) == "TLS"


def test_api_key_and_mtls_together(pems):
    options = connect_options({"TEMPORAL_API_KEY": "k",
                               "TEMPORAL_TLS_CLIENT_CERT_PATH": pems["client.pem"],
                               "TEMPORAL_TLS_CLIENT_KEY_PATH": pems["client.key"],
                               "TEMPORAL_TLS": "true"})
    assert options["api_key"] == "k"
    assert options["tls"] == TLSConfig(client_cert=b"-----client.pem-----",
                                       client_private_key=b"-----client.key-----")
    assert describe_connection(options) == "TLS + API key"


def test_half_an_mtls_pair_names_what_is_missing(pems):
    with pytest.raises(ValueError, match="needs both .* or neither.*TEMPORAL_TLS_CLIENT_KEY_PATH is not set"):
        connect_options({"TEMPORAL_TLS_CLIENT_CERT_PATH": pems["client.pem"]})
    with pytest.raises(ValueError, match="TEMPORAL_TLS_CLIENT_CERT_PATH is not set"):
        connect_options({"TEMPORAL_TLS_CLIENT_KEY_PATH": pems["client.key"]})


def test_an_unreadable_file_names_its_variable(tmp_path, pems):
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ValueError, match=r"cannot read .*nope\.pem \(TEMPORAL_TLS_CLIENT_KEY_PATH\)"):
        connect_options({"TEMPORAL_TLS_CLIENT_CERT_PATH": pems["client.pem"],
                         "TEMPORAL_TLS_CLIENT_KEY_PATH": missing})


def test_versioning_needs_both_or_neither():
    assert versioning_options(None, None) == {}
    config = versioning_options("sa-engine", "2026.12.07-abc")["deployment_config"]
    assert config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("sa-engine", "2026.12.07-abc")
    # Activities only: no default behaviour (temporalio requires one only of workers with workflows).
    assert config.default_versioning_behavior == VersioningBehavior.UNSPECIFIED
    for name, build in (("sa-engine", None), (None, "b1")):
        with pytest.raises(ValueError, match="both --deployment-name and --build-id"):
            versioning_options(name, build)


def worker_args(**kw):
    base = dict(address=None, namespace=None, task_queue=None, health_port=None,
                shutdown_grace=None, deployment_name=None, build_id=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "SAE_TRAINING_TASK_QUEUE", "SAE_HEALTH_PORT",
                 "SAE_SHUTDOWN_GRACE_SECONDS", "SAE_DEPLOYMENT_NAME", "SAE_BUILD_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_worker_settings_from_flags_then_environment(clean_env):
    s = worker_settings(worker_args(), "cpu")
    assert (s.address, s.namespace, s.task_queue) == ("localhost:7233", "default", "sae-gpu-training")
    assert s.health_port is None and s.shutdown_grace_seconds == DEFAULT_SHUTDOWN_GRACE_SECONDS == 300
    assert s.deployment_name is None and s.build_id is None

    clean_env.setenv("SAE_HEALTH_PORT", "8080")
    clean_env.setenv("SAE_SHUTDOWN_GRACE_SECONDS", "45.5")
    clean_env.setenv("SAE_DEPLOYMENT_NAME", "sa-engine")
    clean_env.setenv("SAE_BUILD_ID", "b1")
    s = worker_settings(worker_args(), "cpu")
    assert (s.health_port, s.shutdown_grace_seconds, s.deployment_name, s.build_id) == \
        (8080, 45.5, "sa-engine", "b1")
    s = worker_settings(worker_args(health_port="9090", shutdown_grace="0", build_id="b2"), "cpu")
    assert (s.health_port, s.shutdown_grace_seconds, s.build_id) == (9090, 0.0, "b2")


def test_worker_settings_refuse_bad_values_before_connecting(clean_env):
    for kw, message in ((dict(health_port="http"), "--health-port"),
                        (dict(health_port="70000"), "--health-port"),
                        (dict(shutdown_grace="-1"), "--shutdown-grace"),
                        (dict(shutdown_grace="nan"), "--shutdown-grace"),
                        (dict(deployment_name="sa-engine"), "both --deployment-name and --build-id")):
        with pytest.raises(ValueError, match=message):
            worker_settings(worker_args(**kw), "cpu")


def test_s3_store_uses_the_default_credential_chain(monkeypatch):
    """No keys are passed to boto3: it finds them itself (environment, profile, IRSA web identity,
    ECS or EC2 instance role). The endpoint and region come from SAE_S3_ENDPOINT and AWS_REGION."""
    import boto3

    calls = []
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda *a, **kw: calls.append(kw) or real_client(*a, **kw))
    for name in ("SAE_S3_ENDPOINT", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")

    store = storage.open_store("s3://bucket/prefix")
    assert not any(k.startswith("aws_") for k in calls[-1])
    assert store.client.meta.region_name == "us-east-1"  # the fallback when nothing names one
    assert store.client.meta.config.s3 is None or "addressing_style" not in store.client.meta.config.s3

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert storage.open_store("s3://bucket").client.meta.region_name == "eu-west-3"
    monkeypatch.setenv("AWS_REGION", "ap-south-1")  # the SDKs' newer name wins
    monkeypatch.setenv("SAE_S3_ENDPOINT", "http://s3.internal:9000")
    store = storage.open_store("s3://bucket")
    assert store.client.meta.region_name == "ap-south-1"
    assert store.client.meta.endpoint_url == "http://s3.internal:9000"
    assert store.client.meta.config.s3["addressing_style"] == "path"
