"""The result of evaluating a request: POLICY.md's decision and its JSON form."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from policy.durations import format_duration, parse_duration

APPROVAL_MODES = ("auto", "levels", "break_glass")
SESSION_OPTIONS = ("pty", "exec", "sftp", "port_forwarding")


@dataclass(frozen=True)
class ApprovalLevel:
    """One level: `min` distinct eligible approvers named by approver words (rule 6)."""

    approvers: list[str]
    min: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"approvers": list(self.approvers), "min": self.min}


@dataclass(frozen=True)
class Approval:
    """How a grant gets approved: `auto`, `levels` (in order) or `break_glass` (+ `review`)."""

    mode: str = "auto"
    levels: list[ApprovalLevel] = field(default_factory=list)
    review: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "levels": [lv.to_json() for lv in self.levels]}
        if self.mode == "break_glass":
            out["review"] = list(self.review)
        return out


@dataclass(frozen=True)
class SessionOptions:
    """What a session may do; unspecified means allowed, a deny allows nothing."""

    pty: bool = True
    exec: bool = True
    sftp: bool = True
    port_forwarding: bool = True

    def to_json(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in SESSION_OPTIONS}


NO_SESSION = SessionOptions(False, False, False, False)


@dataclass(frozen=True)
class Decision:
    """POLICY.md's decision. `approval` is None for a deny (nothing to approve)."""

    effect: str
    approval: Approval | None
    max_duration: timedelta | None
    max_extensions: int
    session: SessionOptions
    rules: list[str]
    message: str
    policy_version: str
    errors: list[str] = field(default_factory=list)
    risk: dict[str, Any] | None = None  # the request's POLICY.md `risk` as JSON; None: no scorer ran
    activate: str = "on_approval"  # "on_first_use": the clock starts at the first session through a broker
    claim_within: timedelta | None = None  # on_first_use: how long the approved grant waits for that session
    max_sessions: int | None = None  # sessions the grant allows (None: unlimited; 1: single use)

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"

    def to_json(self) -> dict[str, Any]:
        """POLICY.md's JSON (plus `errors`: rule evaluation errors, usually empty)."""
        return {
            "effect": self.effect,
            "approval": self.approval.to_json() if self.approval is not None else None,
            "max_duration": format_duration(self.max_duration) if self.max_duration is not None else None,
            "max_extensions": self.max_extensions,
            "session": self.session.to_json(),
            "rules": list(self.rules),
            "message": self.message,
            "policy_version": self.policy_version,
            "errors": list(self.errors),
            "activate": self.activate,
            "claim_within": format_duration(self.claim_within) if self.claim_within is not None else None,
            "max_sessions": self.max_sessions,
            **({"risk": dict(self.risk)} if self.risk is not None else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Decision:
        """The inverse of to_json (raises ValueError on a malformed mapping)."""
        try:
            effect = d["effect"]
            if effect not in ("allow", "deny"):
                raise ValueError(f"unknown effect `{effect}`")
            ap = d.get("approval")
            approval = None
            if ap is not None:
                if ap["mode"] not in APPROVAL_MODES:
                    raise ValueError(f"unknown approval mode `{ap['mode']}`")
                approval = Approval(
                    mode=ap["mode"],
                    levels=[ApprovalLevel(list(lv["approvers"]), int(lv.get("min", 1)))
                            for lv in ap.get("levels", [])],
                    review=list(ap.get("review", [])),
                )
            md = d.get("max_duration")
            sess = d.get("session") or {}
            return cls(
                effect=effect,
                approval=approval,
                max_duration=parse_duration(md) if md is not None else None,
                max_extensions=int(d.get("max_extensions", 0)),
                session=SessionOptions(**{k: bool(sess.get(k, False)) for k in SESSION_OPTIONS}),
                rules=list(d.get("rules", [])),
                message=str(d.get("message", "")),
                policy_version=str(d.get("policy_version", "")),
                errors=list(d.get("errors", [])),
                risk=dict(d["risk"]) if isinstance(d.get("risk"), Mapping) else None,
                activate=str(d.get("activate") or "on_approval"),
                claim_within=parse_duration(d["claim_within"]) if d.get("claim_within") else None,
                max_sessions=int(d["max_sessions"]) if d.get("max_sessions") is not None else None,
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a decision: {e}") from None
