"""The `jitgate` CLI's tests: the real command (a subprocess) against a real control plane.

One control plane (`tests.cluster.ControlPlane`, the API tests' policies) serves every
module here; `jitgate(...)` runs `python -m cli.main` as a user would.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import REPO, ControlPlane

POLICIES = REPO / "tests" / "controlplane" / "api" / "policies.yaml"


@pytest.fixture(scope="session")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("cli-cp"), POLICIES) as plane:
        yield plane


def jitgate(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run `jitgate ARGS` (no terminal: output goes to pipes) and return the finished process."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(*args: str, env: dict[str, str], cwd: Path = REPO) -> str:
    """`jitgate ARGS`, which must succeed; its stdout."""
    proc = jitgate(*args, env=env, cwd=cwd)
    assert proc.returncode == 0, f"jitgate {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc.stdout


def as_json(*args: str, env: dict[str, str]) -> Any:
    """`jitgate ARGS --output json`, parsed."""
    return json.loads(ok(*args, "--output", "json", env=env))


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a failed command printed (exit code 1, nothing else on stderr)."""
    assert proc.returncode == 1, f"exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]
