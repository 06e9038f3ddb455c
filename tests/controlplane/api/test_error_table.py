"""The documented error table (proto/ERRORS.md) is the code map, and lists every code the source raises."""
from __future__ import annotations

import re
from pathlib import Path

import grpc

from jitgate.errors import CODES, PREFIXES, JitgateError, is_known, status_name

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "proto" / "ERRORS.md"
ROW = re.compile(r"^\| `([a-z0-9_.*]+)` \| ([A-Z_]+) \| (.+) \|$")
CODE = r'"([a-z0-9]+\.[a-z0-9_]+)"'
# Where a code is written: raising an error class, or a class-level / local `code = "..."`.
RAISED = re.compile(r"(?:Error|Rejected|Exceeded)\(\s*" + CODE + r"|\bcode\s*=\s*" + CODE)


def documented() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    exact: dict[str, tuple[str, str]] = {}
    prefixes: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            code, status, meaning = m.groups()
            target = prefixes if code.endswith(".*") else exact
            assert code.removesuffix(".*") not in target, f"{code} is documented twice"
            target[code.removesuffix(".*")] = (status, meaning)
    return exact, prefixes


def raised_codes(*folders: str) -> dict[str, str]:
    """code -> `file:line` of each code literal raised or assigned in the source folders."""
    out: dict[str, str] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for m in RAISED.finditer(text):
                code = next(g for g in m.groups() if g)
                out.setdefault(code, f"{path.relative_to(REPO)}:{text.count(chr(10), 0, m.start()) + 1}")
    return out


def test_the_documented_table_is_the_code_map():
    exact, prefixes = documented()
    assert exact == {code: (c.status, c.meaning) for code, c in CODES.items()}
    assert prefixes == {prefix: (c.status, c.meaning) for prefix, c in PREFIXES.items()}


def test_every_status_is_a_grpc_status():
    for code, c in {**CODES, **PREFIXES}.items():
        assert c.status in grpc.StatusCode.__members__, code
        assert status_name(code if code in CODES else f"{code}.x") == c.status


def test_every_control_plane_code_has_its_own_row():
    found = raised_codes("controlplane")
    assert len(found) > 30  # the scan finds the codes (a broken pattern would pass vacuously)
    missing = {code: where for code, where in found.items() if code not in CODES}
    assert not missing, f"codes raised but not in jitgate.errors.CODES / proto/ERRORS.md: {missing}"


def test_every_library_code_has_a_row_or_a_prefix_row():
    found = raised_codes("ca", "policy", "recommend", "controlplane", "cli")
    assert {"ca.key_corrupt", "cert.expired", "recommend.history_invalid", "policy.limit"} <= set(found)
    unknown = {code: where for code, where in found.items() if not is_known(code)}
    assert not unknown, f"codes without a row or a prefix row in proto/ERRORS.md: {unknown}"


def test_library_errors_share_the_base():
    from ca.errors import CAError
    from controlplane.config import ConfigError
    from controlplane.errors import JitError
    from policy.errors import PolicyLoadError, RequestError
    from policy.sandbox import SandboxError
    from recommend.errors import RecommendError

    for cls in (CAError, ConfigError, JitError, PolicyLoadError, RequestError, SandboxError, RecommendError):
        assert issubclass(cls, JitgateError), cls
