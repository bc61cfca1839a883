"""connect_options against a real TLS frontend: the Temporal dev server (plaintext) behind a TLS
proxy that requires a client certificate, with a private CA and a server name that is not the
address, as a self-hosted cluster's mTLS frontend has them. Skipped without the dev server
(infra/install-tools.sh) or the openssl command."""

import asyncio
import shutil
import ssl
import subprocess
from datetime import timedelta

import pytest
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from sae_trainer.worker import connect_options, describe_connection
from worker_helpers import TEMPORAL

SERVER_NAME = "temporal.sae.test"

pytestmark = [
    pytest.mark.skipif(TEMPORAL is None, reason="temporal dev server not installed (infra/install-tools.sh)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command to make certificates"),
]


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for SERVER_NAME and a client certificate, all signed by the CA."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=sae-test-ca")
    for name, ext in (("server", f"subjectAltName=DNS:{SERVER_NAME}\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (tmp_path / f"{name}.ext").write_text(ext)
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=sae-{name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return {p.name: str(p) for p in tmp_path.iterdir()}


async def tls_proxy(target: str, pki) -> asyncio.AbstractServer:
    """Terminates mTLS (client certificate required) and passes the bytes on to `target`."""
    host, port = target.rsplit(":", 1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.pem"], pki["server.key"])
    context.load_verify_locations(pki["ca.pem"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


def test_mtls_with_a_private_ca_and_a_server_name(pki):
    env_vars = {"TEMPORAL_TLS_CLIENT_CERT_PATH": pki["client.pem"],
                "TEMPORAL_TLS_CLIENT_KEY_PATH": pki["client.key"],
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH": pki["ca.pem"],
                "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME}

    async def scenario():
        env = await WorkflowEnvironment.start_local(dev_server_existing_path=TEMPORAL,
                                                    dev_server_extra_args=["--log-level", "error"])
        async with env:
            proxy = await tls_proxy(env.client.service_client.config.target_host, pki)
            address = f"127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
            try:
                options = connect_options(env_vars)
                assert describe_connection(options) == "mTLS"
                client = await Client.connect(address, **options)
                assert await client.service_client.check_health()
                # The frontend answers through the proxy: the namespace the dev server made.
                namespaces = await client.workflow_service.list_namespaces(ListNamespacesRequest())
                assert "default" in [n.namespace_info.name for n in namespaces.namespaces]

                # Without the client certificate the proxy refuses the handshake.
                no_cert = {k: v for k, v in env_vars.items() if "CLIENT" not in k}
                with pytest.raises(RuntimeError):
                    await Client.connect(address, **connect_options(no_cert),
                                         connect_timeout=timedelta(seconds=5))
                # Nor does the certificate pass for another name than the one it was made for.
                wrong_name = {**env_vars, "TEMPORAL_TLS_SERVER_NAME": "elsewhere.sae.test"}
                with pytest.raises(RuntimeError):
                    await Client.connect(address, **connect_options(wrong_name),
                                         connect_timeout=timedelta(seconds=5))
            finally:
                proxy.close()
                await proxy.wait_closed()

    asyncio.run(scenario())
