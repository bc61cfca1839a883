"""Object storage by URI: `file:///abs/dir/key` or `s3://bucket/key` (boto3; endpoint from
SAE_S3_ENDPOINT for S3-compatible servers; region from AWS_REGION, else AWS_DEFAULT_REGION or the
profile, else us-east-1). Credentials are never passed in: boto3's default chain finds them (the
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY pair, a profile, an IRSA web identity, an ECS task or EC2
instance role), so a pod with an IAM role needs no keys at all.

Keys are '/'-separated. A store is opened on a root URI and addressed by keys relative to it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import List
from urllib.parse import urlparse


def file_sha256(path: str) -> str:
    """SHA-256 of a local file, read in blocks (a model file can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_key(key: str) -> str:
    """A key relative to a store root: no empty, "." or ".." segment and no leading "/", so that no
    key (e.g. a COCO file_name an annotator supplied) reaches outside its store, on disk or in S3."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts[:-1]) \
            or parts[-1] in (".", ".."):
        raise ValueError(f"key {key!r} is not a plain relative key (no '..', '.', '//' or leading '/')")
    return key


class FileStore:
    def __init__(self, root: str) -> None:
        self.root = os.path.normpath(root)

    def _path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self.root, check_key(key)))
        # By path components: a root /data/store must not admit /data/store-x.
        if os.path.commonpath([self.root, path]) != self.root:
            raise ValueError(f"key {key!r} escapes the store root {self.root}")
        return path

    def uri(self, key: str) -> str:
        return "file://" + self._path(key)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def get_bytes(self, key: str) -> bytes:
        with open(self._path(key), "rb") as f:
            return f.read()

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers never see a partial object

    def download(self, key: str, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        shutil.copyfile(self._path(key), path)

    def upload(self, path: str, key: str) -> None:
        dest = self._path(key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = f"{dest}.tmp{os.getpid()}"
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def list(self, prefix: str) -> List[str]:
        base = self._path(prefix) if prefix else self.root
        directory = base if os.path.isdir(base) else os.path.dirname(base)
        keys = []
        for d, _, files in os.walk(directory):
            for name in files:
                key = os.path.relpath(os.path.join(d, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


class S3Store:
    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3
        from botocore.config import Config

        endpoint = os.environ.get("SAE_S3_ENDPOINT") or None
        # Path-style addressing: local S3-compatible servers do not serve bucket subdomains.
        config = Config(s3={"addressing_style": "path"}) if endpoint else None
        region = os.environ.get("AWS_REGION") or boto3.session.Session().region_name or "us-east-1"
        self.client = boto3.client("s3", endpoint_url=endpoint, config=config, region_name=region)
        self.bucket, self.prefix = bucket, prefix.strip("/")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def download(self, key: str, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.client.download_file(self.bucket, self._key(key), path)

    def upload(self, path: str, key: str) -> None:
        self.client.upload_file(path, self.bucket, self._key(key))

    def list(self, prefix: str) -> List[str]:
        keys, skip = [], len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix) if prefix else
                (f"{self.prefix}/" if self.prefix else "")):
            keys += [obj["Key"][skip:] for obj in page.get("Contents", [])]
        return sorted(keys)


def open_store(uri: str):
    """A store rooted at `uri` (file:///dir or s3://bucket/prefix); a plain path means file://."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, parsed.path)
    if parsed.scheme in ("file", ""):
        return FileStore(os.path.abspath(parsed.path if parsed.scheme else uri))
    raise ValueError(f"unsupported storage URI {uri!r}: expected file:// or s3://")
