"""Where the control plane keeps uploaded recordings: S3-compatible object storage or a directory.

    store = open_object_store("s3://bucket/prefix", endpoint="http://127.0.0.1:9000")
    store.put("REF/data/0000000000000000", b"...")   # one part: bytes at that offset
    store.get("REF/data/0000000000000000")
    store.delete_prefix("REF/")                       # retention
    store.location("REF")                             # s3://bucket/prefix/REF

A recording is stored as parts, each the bytes of its data or chain file from one
offset (`part_key`); concatenated in offset order they are the broker's files byte for
byte, so the seal, which covers every data line through the chain, covers the stored
object. The file store (`DirObjectStore`) keeps the same keys as files: the embedded
default, so `make run` needs no object storage.

Credentials for S3 come from boto3's usual chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, a profile, an instance role), never from jitgate's config;
the endpoint from the config or AWS_ENDPOINT_URL. Every failure to reach the store
is an `ObjectStoreError` (`unavailable` when worth retrying), never a boto exception.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from recorder.events import RecordingError

PART_DIGITS = 16  # offsets in part names, zero-padded so names sort in offset order


class ObjectStoreError(RecordingError):
    """The recording store refused or could not be reached; `unavailable`: try again later."""

    def __init__(self, message: str, *, unavailable: bool = True) -> None:
        super().__init__(message)
        self.unavailable = unavailable


def part_key(ref: str, part: str, offset: int) -> str:
    """The key of the part of `ref`'s `part` file ("data" or "chain") starting at `offset`."""
    return f"{ref}/{part}/{offset:0{PART_DIGITS}d}"


class ObjectStore(Protocol):
    """What the control plane needs from a recording store."""

    def location(self, ref: str) -> str:
        """Where `ref`'s parts are, for people (an s3:// URL or a directory)."""

    def put(self, key: str, data: bytes) -> None:
        """Store one object whole (overwrites)."""

    def get(self, key: str) -> bytes:
        """One object's bytes (ObjectStoreError when missing or unreachable)."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many."""

    def check(self) -> None:
        """Raise ObjectStoreError unless the store answers now."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b/" (always ending in /)

    @classmethod
    def parse(cls, url: str) -> S3Location:
        u = urlparse(url)
        if u.scheme != "s3" or not u.netloc:
            raise RecordingError(f"recording store `{url}` is not s3://BUCKET[/PREFIX]")
        prefix = u.path.strip("/")
        return cls(u.netloc, prefix + "/" if prefix else "")


class S3ObjectStore:
    """Recordings in an S3-compatible bucket (AWS S3, MinIO, Garage, Ceph RGW, ...) via boto3."""

    def __init__(self, url: str, *, endpoint: str | None = None, region: str | None = None,
                 timeout: float = 10.0) -> None:
        import boto3
        from botocore.config import Config

        self.where = S3Location.parse(url)
        self.url = url.rstrip("/")
        # Retries are jitgate's (brokers keep their copy and back off): boto3 tries once, with
        # short timeouts, so an outage is seen at once instead of after minutes of its own retries.
        # No extra payload checksums beyond what S3 requires: each part is already covered by the
        # recording's hash chain and the control plane's SHA-256 (and they cost CPU per byte).
        config = Config(connect_timeout=min(timeout, 3.0), read_timeout=timeout,
                        retries={"max_attempts": 1, "mode": "standard"},
                        s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        self._s3: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=region or os.environ.get("AWS_REGION") or "us-east-1", config=config)

    def _errors(self, what: str, exc: Exception) -> ObjectStoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            missing = code in ("NoSuchKey", "404", "NotFound")
            return ObjectStoreError(f"recording store {self.url}: {what}: {code or status}",
                                    unavailable=not missing and (status >= 500 or status in (0, 429)))
        return ObjectStoreError(f"recording store {self.url} is unreachable ({what}): {type(exc).__name__}")

    def location(self, ref: str) -> str:
        return f"s3://{self.where.bucket}/{self.where.prefix}{ref}"

    def put(self, key: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.where.bucket, Key=self.where.prefix + key, Body=data)
        except Exception as exc:  # botocore raises many kinds; all mean "not stored"
            raise self._errors(f"put {key}", exc) from None

    def get(self, key: str) -> bytes:
        try:
            body = self._s3.get_object(Bucket=self.where.bucket, Key=self.where.prefix + key)["Body"]
            return bytes(body.read())
        except Exception as exc:
            raise self._errors(f"get {key}", exc) from None

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.where.bucket, Prefix=self.where.prefix + prefix)
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self._s3.delete_objects(Bucket=self.where.bucket, Delete={"Objects": keys, "Quiet": True})
                    deleted += len(keys)
        except Exception as exc:
            raise self._errors(f"delete {prefix}", exc) from None
        return deleted

    def check(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.where.bucket)
        except Exception as exc:
            raise self._errors("head bucket", exc) from None


class DirObjectStore:
    """Recordings as files under one directory (mode 0700 directories, 0600 files)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ObjectStoreError(f"bad object key `{key}`", unavailable=False)
        return self.root.joinpath(*parts)

    def location(self, ref: str) -> str:
        return str(self.root / ref)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise ObjectStoreError(f"recording store {self.root}: {exc.strerror}: {key}") from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise ObjectStoreError(f"recording store {self.root}: {exc.strerror}: {key}",
                                   unavailable=not isinstance(exc, FileNotFoundError)) from None

    def delete_prefix(self, prefix: str) -> int:
        import shutil

        target = self._path(prefix.rstrip("/"))
        if not target.exists():
            return 0
        count = sum(1 for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target, ignore_errors=True)
        return count

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ObjectStoreError(f"recording store {self.root}: {exc.strerror}") from None


def open_object_store(url: str, *, endpoint: str | None = None, region: str | None = None) -> ObjectStore:
    """`s3://bucket/prefix` -> S3ObjectStore; a path or file:// URL -> DirObjectStore."""
    if url.startswith("s3://"):
        return S3ObjectStore(url, endpoint=endpoint, region=region)
    if url.startswith("file://"):
        url = url[len("file://"):]
    return DirObjectStore(url)


class ChunkStream(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (parts from a store, chunks from a
    stream), so `RecordingReader` reads a recording line by line without holding it whole."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buffer = nxt
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # a gRPC stream or generator: stop it early
        super().close()


def open_chunks(chunks: Iterator[bytes]) -> io.BufferedReader:
    """A buffered binary file (iterable by lines) over `chunks`."""
    return io.BufferedReader(ChunkStream(chunks), buffer_size=256 * 1024)
