"""Shared test helpers (import as `from tests.support import require_binary`).

`require(...)` is how a test asks for an outside component (a binary, a running
PostgreSQL): outside CI it skips when the component is missing; with CI=true it
fails, because CI must run everything.
"""
from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str) -> None:
    """Fail under CI, skip elsewhere, when a required component is missing."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"required component missing in CI: {what}")
    pytest.skip(f"component missing: {what}")


def require_binary(name: str) -> str:
    """Path of an executable, or fail (CI) / skip (elsewhere)."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    require(path is not None, f"executable `{name}`")
    return path  # type: ignore[return-value]
