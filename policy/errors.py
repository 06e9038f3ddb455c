"""Errors of the policy engine, each with a stable code (`policy.*`)."""
from __future__ import annotations

from dataclasses import dataclass

from jitgate.errors import JitgateError


@dataclass(frozen=True)
class PolicyError:
    """One problem in a policy set, pointing at `file:line:col` (1-based)."""

    file: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class PolicyLoadError(JitgateError):
    """A policy set was refused; `.errors` lists every problem found (each with its own code)."""

    code = "policy.invalid"

    def __init__(self, errors: list[PolicyError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "policy refused")


class RequestError(JitgateError, ValueError):
    """A request (JSON/YAML mapping) is malformed: a plain sentence says why."""

    code = "policy.bad_request"
