"""What the worker tests share: the dev-stack binaries `infra/install-tools.sh` builds, a free
port, a probe of the health server, and a file:// bucket holding the synthetic training set."""

import json
import os
import socket
import urllib.error
import urllib.request

from sae_trainer.storage import open_store

TRAINER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TRAINER)


def tool_path(name: str, env_var: str):
    """The binary infra/tools.json pins, from the tools cache (or env_var); None if not built."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    with open(os.path.join(REPO, "infra", "tools.json")) as f:
        version = json.load(f)[name]["version"]
    cache = os.environ.get("SAE_CACHE_DIR") or os.path.expanduser("~/.cache/sa-engine")
    path = os.path.join(cache, "tools", f"{name}-{version}", name)
    return path if os.access(path, os.X_OK) else None


TEMPORAL = tool_path("temporal", "SAE_TEMPORAL_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(port: int, path: str) -> int:
    """The HTTP status of GET path; 0 when nothing listens (yet, or any more)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def training_bucket(coco_dir: str, tmp_path) -> str:
    """A file:// bucket with the synthetic dataset under data/ and its manifest."""
    uri = f"file://{tmp_path / 'bucket'}"
    store = open_store(uri)
    for d, _, files in os.walk(coco_dir):
        for name in files:
            store.upload(os.path.join(d, name), f"data/{os.path.relpath(os.path.join(d, name), coco_dir)}")
    store.put_bytes("data/manifest.json", json.dumps({"annotations": "data/annotations.json"}).encode())
    return uri


def train_input(store_uri: str, steps: int) -> dict:
    """A trainSam input over training_bucket's data: a tiny model, a checkpoint every step."""
    return {"storage": store_uri, "trainingSet": "data/manifest.json", "registry": f"{store_uri}/registry",
            "modelName": "ref", "version": 1, "mode": "full", "steps": steps, "batchSize": 1,
            "masksPerImage": 1, "numPoints": 1, "checkpointEvery": 1, "model": {"imageSize": 128}}
