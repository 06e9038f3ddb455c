"""A real S3-compatible server for tests: s3rver (npm), a standalone server on the filesystem.

    with S3Server(tmp / "s3", bucket="rec") as s3:
        s3.env                    # AWS_* variables for boto3 (s3rver's fixed test credentials)
        s3.stop(); s3.start()     # an outage: same port, same data

Looked for first (2026-12): no MinIO, Garage, VersityGW or SeaweedFS in Debian's
archive here, no S3 server on PyPI (the `minio` package is a client); npm has
`s3rver`, a real HTTP server speaking the S3 REST API with signature checks,
which is what these tests run. moto's standalone server (an emulator) was the fallback.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

# s3rver's built-in credentials (it checks signatures against them).
ACCESS_KEY = "S3RVER"
SECRET_KEY = "S3RVER"


def s3rver_path() -> str | None:
    return shutil.which("s3rver")


def require_s3rver() -> str:
    path = s3rver_path()
    if path is None:
        message = "s3rver is not installed (scripts/setup.sh installs it: npm install -g s3rver@3.7.1)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _drain(stream: Any) -> None:
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


class S3Server:
    """One s3rver process; `stop()` and `start()` keep its port and data (an outage and a return)."""

    def __init__(self, data: Path, bucket: str = "recordings") -> None:
        self.data = Path(data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.bucket = bucket
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.data.parent / "s3rver.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint}

    def start(self, timeout: float = 20.0) -> S3Server:
        binary = require_s3rver()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-d", str(self.data), "-a", "127.0.0.1", "-p", str(self.port),
                 "--configure-bucket", self.bucket, "--no-vhost-buckets", "--silent"],
                stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen += line
            m = re.search(rb"listening on [^:]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                # It logs every request on stdout: keep the pipe drained so it never blocks.
                threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
                return self
        self.stop()
        raise RuntimeError(f"s3rver did not start: {seen.decode(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
