"""Object storage for job inputs and outputs: S3-compatible (boto3) or a local directory.

Keys: ``inputs/{job}/image.png``, ``inputs/{job}/poses.json``, ``inputs/{job}/source_pose.json``,
``inputs/{job}/mask.png``, ``outputs/{job}/animation.mp4``, ``outputs/{job}/poster.png``.
Outputs are handed out as expiring links: presigned GETs for S3, HMAC-signed links served by the
API (``/files/{key}?expires=..&sig=..``) for the local backend.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from jobs.settings import Settings


class StorageUnavailable(Exception):
    """The storage backend could not be reached or refused the operation (after retries)."""


class ObjectNotFound(KeyError):
    pass


def input_key(job_id: str, name: str) -> str:
    return f"inputs/{job_id}/{name}"


def output_key(job_id: str, name: str) -> str:
    return f"outputs/{job_id}/{name}"


class Storage(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def delete_prefix(self, prefix: str) -> None: ...
    def delete(self, key: str) -> None: ...
    def list_jobs(self, area: str) -> dict[str, float]: ...
    def url(self, key: str, expires_s: int, base_url: str | None = None) -> str: ...
    def check(self) -> None: ...


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class LocalStorage:
    """Files under one directory; links are signed by the API that serves them."""

    def __init__(self, root: Path, signing_secret: bytes) -> None:
        self.root = root
        self.secret = signing_secret

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageUnavailable(f"local storage write failed: {exc.strerror}") from exc

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self.put_bytes(key, path.read_bytes(), content_type)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"local storage read failed: {exc.strerror}") from exc

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.root / _safe_key(prefix.rstrip("/")), ignore_errors=True)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"local storage delete failed: {exc.strerror}") from exc

    def list_jobs(self, area: str) -> dict[str, float]:
        """``{job_id: newest modification time}`` of the jobs with files under ``area/`` (inputs, outputs)."""
        out: dict[str, float] = {}
        base = self.root / _safe_key(area)
        try:
            dirs = [d for d in base.iterdir() if d.is_dir()]
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise StorageUnavailable(f"local storage listing failed: {exc.strerror}") from exc
        for job_dir in dirs:
            try:
                times = [f.stat().st_mtime for f in job_dir.iterdir()] or [job_dir.stat().st_mtime]
            except OSError:
                continue  # deleted meanwhile
            out[job_dir.name] = max(times)
        return out

    def sign(self, key: str, expires: int) -> str:
        return hmac.new(self.secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: int, signature: str) -> bool:
        """Constant-time on bytes: any string (non-ASCII, truncated) is simply not the signature."""
        expected = self.sign(key, expires).encode()
        given = signature.encode("utf-8", "replace")
        return hmac.compare_digest(expected, given) and expires >= time.time()

    def url(self, key: str, expires_s: int, base_url: str | None = None) -> str:
        expires = int(time.time()) + expires_s
        path = f"/files/{quote(_safe_key(key))}?expires={expires}&sig={self.sign(key, expires)}"
        return f"{base_url.rstrip('/')}{path}" if base_url else path

    def open_path(self, key: str) -> Path:
        return self._path(key)

    def check(self) -> None:
        """Create a new folder and file where jobs create theirs (``inputs/``, ``outputs/``), then
        remove them: rewriting one existing file passed while new job folders could not be made."""
        try:
            for prefix in ("inputs", "outputs"):
                (self.root / prefix).mkdir(parents=True, exist_ok=True)
                folder = Path(tempfile.mkdtemp(prefix=".readyz-", dir=self.root / prefix))
                try:
                    (folder / "probe").write_bytes(b"ok")
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
        except OSError as exc:
            raise StorageUnavailable(f"local storage not writable: {exc.strerror}") from exc


class S3Storage:
    """Any S3-compatible endpoint (AWS, MinIO, moto). boto3 retries transient errors itself."""

    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        import boto3
        from botocore.config import Config

        style = settings.s3_addressing_style or ("path" if settings.s3_endpoint_url else "auto")
        secret = settings.s3_secret_access_key
        self.bucket = bucket
        self.prefix = prefix.strip("/")

        def client(endpoint: str | None) -> Any:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=secret.get_secret_value() if secret else None,
                config=Config(
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    s3={"addressing_style": style},
                    signature_version="s3v4",
                ),
            )

        self.client: Any = client(settings.s3_endpoint_url)
        # Links go to clients, who may reach the storage under another name than the workers do
        # (compose: http://minio:9000 inside, http://localhost:9000 outside). Presigning is offline.
        public = settings.s3_public_endpoint_url
        self.presigner: Any = client(public) if public else self.client

    def _key(self, key: str) -> str:
        key = _safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectNotFound(kwargs.get("Key", "")) from exc
            raise StorageUnavailable(f"S3 {op} failed: {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {op} failed: {type(exc).__name__}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._call("put_object", Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        with path.open("rb") as f:
            self._call("put_object", Bucket=self.bucket, Key=self._key(key), Body=f, ContentType=content_type)

    def get_bytes(self, key: str) -> bytes:
        body = self._call("get_object", Bucket=self.bucket, Key=self._key(key))["Body"]
        return bytes(body.read())

    def delete_prefix(self, prefix: str) -> None:
        listing = self._call(
            "list_objects_v2", Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/")) + "/"
        )
        objects = [{"Key": o["Key"]} for o in listing.get("Contents", [])]
        if objects:
            self._call("delete_objects", Bucket=self.bucket, Delete={"Objects": objects})

    def delete(self, key: str) -> None:
        self._call("delete_object", Bucket=self.bucket, Key=self._key(key))

    def list_jobs(self, area: str) -> dict[str, float]:
        """``{job_id: newest LastModified}`` of the jobs with objects under ``area/``."""
        out: dict[str, float] = {}
        start = self._key(area) + "/"
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": start}
            if token:
                kwargs["ContinuationToken"] = token
            listing = self._call("list_objects_v2", **kwargs)
            for obj in listing.get("Contents", []):
                job_id = obj["Key"][len(start) :].split("/", 1)[0]
                out[job_id] = max(out.get(job_id, 0.0), obj["LastModified"].timestamp())
            token = listing.get("NextContinuationToken")
            if not token:
                return out

    def url(self, key: str, expires_s: int, base_url: str | None = None) -> str:
        return str(
            self.presigner.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
            )
        )

    def check(self) -> None:
        self._call("head_bucket", Bucket=self.bucket)


def _local_root(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError("file storage URL must be file:///absolute/dir or file:relative/dir")
    return Path(parts.path).expanduser().resolve()


class LinkSecretMissing(ValueError):
    """Production with local storage and no ``POSEANIMATE_LINK_SIGNING_SECRET``: refuse to start."""


def link_secret(settings: Settings, redis: Any = None) -> bytes:
    """The key that signs local-file links; the API and the workers must agree on it.

    Configured (its own secret: never derived from the webhook secret, which every webhook receiver
    holds). Without one, ``POSEANIMATE_ENV=production`` refuses (``LinkSecretMissing``); development
    generates one random key shared through Redis (the first process to start picks it), else (no
    Redis) a per-process key.
    """
    if settings.link_signing_secret is not None:
        return settings.link_signing_secret.get_secret_value().encode()
    if settings.env != "development":
        raise LinkSecretMissing(
            "POSEANIMATE_LINK_SIGNING_SECRET is not set: local-file links need their own secret"
            " (or POSEANIMATE_ENV=development to generate one)"
        )
    if redis is not None:
        key = f"{settings.key_prefix}:link-secret"
        redis.set(key, secrets.token_hex(32), nx=True)
        value = redis.get(key)
        return value if isinstance(value, bytes) else str(value).encode()
    return secrets.token_bytes(32)


def storage_from_settings(settings: Settings, redis: Any = None) -> Storage:
    """The configured backend; ``redis`` lets local-file link signing share a generated key."""
    if settings.storage_url.startswith("s3://"):
        parts = urlsplit(settings.storage_url)
        if not parts.netloc:
            raise ValueError("s3 storage URL needs a bucket: s3://bucket/prefix")
        return S3Storage(settings, parts.netloc, parts.path)
    return LocalStorage(_local_root(settings.storage_url), link_secret(settings, redis))
