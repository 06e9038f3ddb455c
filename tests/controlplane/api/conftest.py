"""One real control plane (subprocess, mTLS on loopback) shared by the API tests."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.cluster import REPO, ControlPlane

POLICIES = Path(__file__).with_name("policies.yaml")


@pytest.fixture(scope="session")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("cp"), POLICIES) as plane:
        yield plane


def duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(dt.timedelta(seconds=seconds))
    return out


def refused(call: Any, code: grpc.StatusCode) -> str:
    """Run `call()`, assert it fails with `code`, return the detail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, f"{info.value.code()}: {info.value.details()}"
    return info.value.details()


def wait_state(client: Any, request_id: str, state: int, timeout: float = 10.0) -> Any:
    """Poll GetRequest until the request reaches `state` (no fixed sleep: returns as soon as it does)."""
    from jitgate.v1 import access_pb2

    deadline = time.monotonic() + timeout
    while True:
        req = client.access.GetRequest(access_pb2.GetRequestRequest(id=request_id))
        if req.state == state:
            return req
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} still in state {req.state}, wanted {state}")
        time.sleep(0.05)


def jitgate(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `jitgate` CLI as a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"jitgate {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


