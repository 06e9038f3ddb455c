"""A request as the policy engine sees it, and its JSON/YAML mapping form."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from policy.durations import format_duration, parse_duration
from policy.errors import RequestError
from policy.limits import MAX_COUNTER, MAX_DURATION, MAX_REQUEST_DEPTH, MAX_REQUEST_JSON_BYTES

HISTORY_COUNTERS = ("granted_90d", "denied_90d", "revoked_90d", "flagged_90d")
HISTORY_FIELDS = (*HISTORY_COUNTERS, "median_minutes")
_REQUEST_FIELDS = (
    "id", "user", "resource", "login", "role", "duration", "reason", "ticket",
    "emergency", "extension", "time", "history", "risk", "start",
)
MAX_RISK_REASONS = 16  # reasons a request's risk may carry (a scorer names a few; more is a malformed input)


@dataclass(frozen=True)
class Risk:
    """POLICY.md's `risk`: whether a score was computed, the score (0 to 1; 0.0 when not
    known) and its reasons (when not known: why)."""

    known: bool
    score: float = 0.0
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "score": round(self.score, 4) if self.known else 0.0,
                "reasons": list(self.reasons)}

    @classmethod
    def from_mapping(cls, d: Any) -> Risk:
        """A request's `risk` (policy tests, decision JSON); raises RequestError."""
        if not isinstance(d, Mapping) or set(d) - {"known", "score", "reasons"}:
            raise RequestError("`risk` must be a mapping of `known`, `score` and `reasons`")
        known, score, reasons = d.get("known", False), d.get("score", 0.0), d.get("reasons", [])
        if not isinstance(known, bool):
            raise RequestError(f"`risk.known` must be true or false, got {_kind(known)}")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise RequestError(f"`risk.score` must be a number from 0 to 1, got {score!r}")
        if (not isinstance(reasons, list) or len(reasons) > MAX_RISK_REASONS
                or not all(isinstance(r, str) for r in reasons)):
            raise RequestError(f"`risk.reasons` must be a list of at most {MAX_RISK_REASONS} strings")
        return cls(known, float(score) if known else 0.0, tuple(reasons))


@dataclass(frozen=True, kw_only=True)
class PolicyRequest:
    """Who asks for what, how long and why, at `time`, with the requester's `history`.

    `id` is an optional label (e.g. the control plane's request id) that diff
    output shows; it never influences a decision. Fields are keyword-only.
    """

    user: str
    resource: str
    duration: timedelta
    time: datetime
    login: str = ""
    role: str = ""
    reason: str = ""
    ticket: str = ""
    emergency: bool = False
    extension: int = 0
    history: dict[str, int | float] = field(default_factory=dict)
    risk: Risk | None = None  # None: no scorer ran (CEL sees risk.known == false)
    id: str = ""
    start: datetime | None = None  # a scheduled window's start (POLICY.md Additions); None: `time`

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise RequestError("`time` must carry a time zone (RFC 3339, e.g. 2026-11-18T10:00:00Z)")
        if self.start is not None and self.start.tzinfo is None:
            raise RequestError("`start` must carry a time zone (RFC 3339, e.g. 2026-12-05T22:00:00Z)")

    @property
    def window_start(self) -> datetime:
        """When the access would begin: `start`, or `time` for access now. Rules see it as `now`."""
        return self.start if self.start is not None else self.time

    def history_value(self, name: str) -> int | float:
        """A history field; absent counters are 0."""
        if name == "median_minutes":
            return float(self.history.get(name, 0.0))
        return int(self.history.get(name, 0))

    @classmethod
    def from_mapping(cls, d: Any, *, default_time: datetime | None = None) -> PolicyRequest:  # checked: any shape
        """Parse the request shape of POLICY.md; raise RequestError with a plain message."""
        if not isinstance(d, Mapping):
            raise RequestError(f"a request must be a mapping, got {_kind(d)}")
        unknown = [k for k in d if k not in _REQUEST_FIELDS]
        if unknown:
            raise RequestError(
                f"unknown request field `{unknown[0]}` (known: {', '.join(_REQUEST_FIELDS)})")
        for req in ("user", "resource", "duration"):
            if d.get(req) in (None, ""):
                raise RequestError(f"a request needs `{req}`")
        time_value = d.get("time")
        if time_value is None:
            if default_time is None:
                raise RequestError("a request needs `time` (RFC 3339, e.g. 2026-11-18T10:00:00Z)")
            when = default_time
        else:
            when = _parse_time(time_value)
        return cls(
            id=_text(d, "id"),
            user=_text(d, "user"),
            resource=_text(d, "resource"),
            login=_text(d, "login"),
            role=_text(d, "role"),
            duration=_parse_dur(d["duration"]),
            reason=_text(d, "reason"),
            ticket=_text(d, "ticket"),
            emergency=_flag(d, "emergency"),
            extension=_count(d, "extension"),
            time=when,
            history=_history(d.get("history")),
            risk=Risk.from_mapping(d["risk"]) if d.get("risk") is not None else None,
            start=_parse_time(d["start"]) if d.get("start") is not None else None,
        )

    def to_mapping(self) -> dict[str, Any]:
        """The inverse of from_mapping (JSON-ready; empty optional fields left out)."""
        out: dict[str, Any] = {}
        if self.id:
            out["id"] = self.id
        out["user"] = self.user
        out["resource"] = self.resource
        if self.login:
            out["login"] = self.login
        if self.role:
            out["role"] = self.role
        out["duration"] = format_duration(self.duration)
        if self.reason:
            out["reason"] = self.reason
        if self.ticket:
            out["ticket"] = self.ticket
        if self.emergency:
            out["emergency"] = True
        if self.extension:
            out["extension"] = self.extension
        out["time"] = format_time(self.time)
        if self.start is not None:
            out["start"] = format_time(self.start)
        if self.history:
            out["history"] = dict(self.history)
        if self.risk is not None:
            out["risk"] = self.risk.to_json()
        return out


def format_time(t: datetime) -> str:
    """RFC 3339 text; UTC is written with `Z`."""
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _kind(v: Any) -> str:
    return {str: "text", bool: "a boolean", int: "a number", float: "a number",
            list: "a list", dict: "a mapping", type(None): "nothing"}.get(type(v), type(v).__name__)


def _text(d: Mapping[str, Any], key: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise RequestError(f"`{key}` must be text, got {_kind(v)}")
    return v


def _flag(d: Mapping[str, Any], key: str) -> bool:
    v = d.get(key, False)
    if not isinstance(v, bool):
        raise RequestError(f"`{key}` must be true or false, got {_kind(v)}")
    return v


def _count(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNTER:
        raise RequestError(f"`{key}` must be a whole number from 0 to {MAX_COUNTER}, got {_short(v)}")
    return v


def _short(v: Any) -> str:
    """A value for an error message, cut (a huge number or text stays readable)."""
    text = repr(v) if not isinstance(v, int) or abs(v) < 10**30 else "a huge number"
    return text if len(text) <= 40 else text[:40] + "..."


def _parse_dur(v: Any) -> timedelta:
    if isinstance(v, timedelta):
        td = v
    else:
        try:
            td = parse_duration(v)
        except ValueError as e:
            raise RequestError(f"`duration`: {e}") from None
    if td <= timedelta(0):
        raise RequestError("`duration` must be longer than 0s")
    if td > MAX_DURATION:
        raise RequestError(f"`duration` is longer than the maximum of {format_duration(MAX_DURATION)}")
    return td


def _parse_time(v: Any) -> datetime:
    if isinstance(v, datetime):
        t = v
    elif isinstance(v, str):
        try:
            t = datetime.fromisoformat(v.strip())
        except ValueError:
            raise RequestError(f"`time` is not RFC 3339: `{v}` (e.g. 2026-11-18T10:00:00Z)") from None
    else:
        raise RequestError(f"`time` must be RFC 3339 text, got {_kind(v)}")
    if t.tzinfo is None:
        raise RequestError(f"`time` needs a time zone: `{v}` (add Z or +01:00)")
    return t


def _history(v: Any) -> dict[str, int | float]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise RequestError(f"`history` must be a mapping, got {_kind(v)}")
    out: dict[str, int | float] = {}
    for k, x in v.items():
        if k not in HISTORY_FIELDS:
            raise RequestError(f"unknown history field `{k}` (known: {', '.join(HISTORY_FIELDS)})")
        if k == "median_minutes":
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= MAX_COUNTER:
                raise RequestError(f"`history.{k}` must be a number from 0 to {MAX_COUNTER}, got {_short(x)}")
            out[k] = float(x)
        else:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= MAX_COUNTER:
                raise RequestError(f"`history.{k}` must be a whole number from 0 to {MAX_COUNTER}, "
                                   f"got {_short(x)}")
            out[k] = x
    return out


def utc(dt: datetime) -> datetime:
    """`dt` in UTC (helper for callers building requests)."""
    return dt.astimezone(UTC)


def json_depth_problem(text: str, max_depth: int) -> str | None:
    """Why JSON `text` nests too deeply (None when it does not), found without parsing it,
    so a hostile document never reaches the recursive parser."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
        elif ch in "]}":
            depth -= 1
    return None


def request_from_json(text: str, *, default_time: datetime | None = None) -> PolicyRequest:
    """A request from JSON text (DryRun, `policy diff` lines), within the request bounds;
    raises RequestError naming the bound."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_REQUEST_JSON_BYTES:
        raise RequestError(f"the request is {size} bytes, above the limit of {MAX_REQUEST_JSON_BYTES}")
    problem = json_depth_problem(text, MAX_REQUEST_DEPTH)
    if problem:
        raise RequestError(f"the request is {problem}")
    try:
        data = json.loads(text)
    except ValueError as e:  # JSONDecodeError, and huge integers past Python's digit limit
        raise RequestError(f"not JSON: {getattr(e, 'msg', None) or e}") from None
    return PolicyRequest.from_mapping(data, default_time=default_time)
