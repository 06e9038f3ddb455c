"""The history format: one past grant per JSON line.

Fields: `user`, `resource`, `kind`, `labels` (map of strings), exactly one of
`login` (ssh) or `role` (database), `reason`, `ticket`, `requested_at` (RFC 3339
with a zone), `asked_minutes`, `used_minutes`, `extensions`. `labels`, `reason`,
`ticket`, `extensions` and `emergency` (break-glass, a boolean) may be left out (empty / 0); any other field is
refused so that a typo does not silently drop data.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from recommend.errors import HistoryError
from recommend.tasks import classify_task

_REQUIRED = ("user", "resource", "kind", "requested_at", "asked_minutes", "used_minutes")
_OPTIONAL = ("labels", "login", "role", "reason", "ticket", "extensions", "emergency")
_KNOWN = frozenset(_REQUIRED + _OPTIONAL)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One past grant: what was asked, what was really used.

    Slotted: risk scoring reads a few hundred rows on every request, and a row without an instance
    dict is one memory load fewer per attribute (~5% of a score's time, measured).
    """

    user: str
    resource: str
    kind: str
    requested_at: datetime
    asked_minutes: float
    used_minutes: float
    labels: Mapping[str, str] = field(default_factory=dict)
    login: str | None = None
    role: str | None = None
    reason: str = ""
    ticket: str = ""
    extensions: int = 0
    emergency: bool = False  # break-glass (read by risk scoring only)
    finished_at: datetime = field(init=False, repr=False, compare=False)
    """When the grant's use ended: the earliest moment its used time is known."""
    task: str = field(init=False, repr=False, compare=False)
    """Task type from reason and ticket (recommend.tasks.classify_task)."""
    access: str = field(init=False, repr=False, compare=False)
    """`login:deploy` or `role:readonly`: the privilege asked for, as one value."""

    def __post_init__(self) -> None:
        # Computed once per row: training and serving read them for every row, every call.
        object.__setattr__(self, "finished_at", self.requested_at + timedelta(minutes=self.used_minutes))
        object.__setattr__(self, "task", classify_task(self.reason, self.ticket))
        object.__setattr__(self, "access", f"login:{self.login}" if self.login is not None else f"role:{self.role}")

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one history line."""
        out: dict[str, Any] = {
            "user": self.user,
            "resource": self.resource,
            "kind": self.kind,
            "labels": dict(self.labels),
        }
        if self.login is not None:
            out["login"] = self.login
        else:
            out["role"] = self.role
        out.update(
            reason=self.reason,
            ticket=self.ticket,
            requested_at=format_time(self.requested_at),
            asked_minutes=_number_out(self.asked_minutes),
            used_minutes=_number_out(self.used_minutes),
            extensions=self.extensions,
        )
        if self.emergency:
            out["emergency"] = True
        return out


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """RFC 3339 (date, `T`, time, zone); raises ValueError with a plain message."""
    if not isinstance(text, str) or len(text) < 19 or text[10] not in "Tt ":
        raise ValueError(f"must be an RFC 3339 time like 2026-11-18T10:00:00Z, got {json.dumps(text)}")
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"must be an RFC 3339 time like 2026-11-18T10:00:00Z, got {json.dumps(text)}") from None
    if value.tzinfo is None:
        raise ValueError(f"needs a time zone (Z or +hh:mm), got {json.dumps(text)}")
    return value.astimezone(UTC)


def _number_out(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 2)


def _string(obj: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = obj.get(name, None if required else "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"field `{name}` must be a non-empty string, got {json.dumps(value)}")
    return value


def _minutes(obj: Mapping[str, Any], name: str, *, positive: bool) -> float:
    value = obj[name]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > 0 if positive else value >= 0):
        return float(value)
    bound = "> 0" if positive else ">= 0"
    raise ValueError(f"field `{name}` must be a number {bound}, got {json.dumps(value)}")


def row_from_json(obj: Any) -> HistoryRow:
    """One parsed JSON object -> HistoryRow; ValueError says which field is wrong."""
    if not isinstance(obj, dict):
        raise ValueError(f"a line must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KNOWN)
    if unknown:
        raise ValueError(f"unknown field `{unknown[0]}` (known: {', '.join(_REQUIRED + _OPTIONAL)})")
    missing = [name for name in _REQUIRED if name not in obj]
    if missing:
        raise ValueError(f"missing field `{missing[0]}`")
    has_login, has_role = obj.get("login") is not None, obj.get("role") is not None
    if has_login == has_role:
        raise ValueError("exactly one of `login` (ssh) or `role` (database) is needed")
    labels = obj.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("field `labels` must be a map of strings to strings")
    extensions = obj.get("extensions", 0)
    if not isinstance(extensions, int) or isinstance(extensions, bool) or extensions < 0:
        raise ValueError(f"field `extensions` must be an integer >= 0, got {json.dumps(extensions)}")
    emergency = obj.get("emergency", False)
    if not isinstance(emergency, bool):
        raise ValueError(f"field `emergency` must be true or false, got {json.dumps(emergency)}")
    try:
        requested_at = parse_time(obj["requested_at"])
    except ValueError as exc:
        raise ValueError(f"field `requested_at` {exc}") from None
    return HistoryRow(
        user=_string(obj, "user", required=True),
        resource=_string(obj, "resource", required=True),
        kind=_string(obj, "kind", required=True),
        labels=dict(labels),
        login=_string(obj, "login", required=True) if has_login else None,
        role=_string(obj, "role", required=True) if has_role else None,
        reason=_string(obj, "reason", required=False),
        ticket=_string(obj, "ticket", required=False),
        requested_at=requested_at,
        asked_minutes=_minutes(obj, "asked_minutes", positive=True),
        used_minutes=_minutes(obj, "used_minutes", positive=False),
        extensions=extensions,
        emergency=emergency,
    )


def parse_lines(lines: Iterable[str], source: str) -> Iterator[HistoryRow]:
    """Rows of JSON-lines text; blank lines are skipped; errors name `source:line`."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HistoryError(source, number, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        try:
            yield row_from_json(obj)
        except ValueError as exc:
            raise HistoryError(source, number, str(exc)) from None


def read_history(path: str | os.PathLike[str]) -> list[HistoryRow]:
    """Every row of a history file, in file order; raises HistoryError on the first bad line."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            return list(parse_lines(handle, name))
    except FileNotFoundError:
        raise HistoryError(name, 0, "no such file") from None
    except UnicodeDecodeError as exc:
        raise HistoryError(name, 0, f"not UTF-8 text ({exc.reason})") from None


def write_rows(rows: Iterable[HistoryRow], out: TextIO) -> int:
    """Write rows as JSON lines to an open text stream; returns the count."""
    count = 0
    for row in rows:
        out.write(json.dumps(row.to_json(), separators=(",", ":"), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


def write_history(rows: Iterable[HistoryRow], path: str | os.PathLike[str]) -> int:
    """Write a history file atomically (temp file + rename); returns the count."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        count = write_rows(rows, handle)
    os.replace(tmp, target)
    return count
