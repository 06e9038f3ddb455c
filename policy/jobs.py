"""Work the sandbox (policy.sandbox) runs in its child for the control plane.

`validate PATH`: load, check and test the policy set at PATH and print one JSON
object: {"ok": true, "version": ...} or {"ok": false, "problems": [...]}.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from policy.errors import PolicyLoadError
from policy.policyset import load_policy_set


def validation(path: str) -> dict[str, Any]:
    """The outcome of checking a candidate set (tests included), as JSON-ready data."""
    try:
        ps = load_policy_set(path)
    except PolicyLoadError as e:
        return {"ok": False, "problems": [
            {"file": x.file, "line": x.line, "col": x.col, "code": x.code, "message": x.message}
            for x in e.errors]}
    return {"ok": True, "version": ps.version}


def validate() -> None:
    """Entry point: `validate PATH` (sys.argv[1])."""
    print(json.dumps(validation(sys.argv[1])))
