"""The audit log's hash chain: canonical form, hashing, and verification.

Each event stores `prev_hash` (the previous event's hash, `GENESIS` for the
first) and `hash = sha256(canonical JSON of [seq, at, type, actor, subject,
data, prev_hash])`. Editing a row breaks its hash; removing, reordering or
inserting rows breaks the seq run or the prev_hash links; cutting the tail is
caught against the stored chain head.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.model import AuditRecord

GENESIS = "0" * 64

# One event to append: (type, actor, subject, data, at).
AuditEvent = tuple[str, str, str, dict[str, Any], datetime]

# Keys never written into event data: credentials must not reach the log.
SECRET_KEYS = frozenset({"token", "db_token", "password", "private_key", "secret", "passphrase"})


@functools.lru_cache(maxsize=256)
def format_at(at: datetime) -> str:
    """The timestamp as hashed: UTC, microseconds, `Z` (cached: batches share one time)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def data_text(data: dict[str, Any]) -> str:
    """The canonical JSON text of event data (also what the store keeps)."""
    if not data:
        return "{}"
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(seq: int, at: datetime, type_: str, actor: str, subject: str,
              data: dict[str, Any] | str, prev_hash: str) -> bytes:
    """The canonical bytes an event's hash covers: the JSON array
    `[seq, at, type, actor, subject, data, prev_hash]`, keys sorted, no spaces."""
    text = data if isinstance(data, str) else data_text(data)
    return _joined(seq, _around_subject(at, type_, actor, text), subject, prev_hash)


def _around_subject(at: datetime, type_: str, actor: str, text: str) -> tuple[str, str]:
    """The canonical form's parts before the subject (after the seq) and after it (before the
    prev_hash): the same for every event of a batch of one type, actor, time and data."""
    return f",{_str(format_at(at))},{_str(type_)},{_str(actor)},", f",{text},"


def _joined(seq: int, around: tuple[str, str], subject: str, prev_hash: str) -> bytes:
    return f"[{int(seq)}{around[0]}{_str(subject)}{around[1]}{_str(prev_hash)}]".encode()


_str = json.encoder.encode_basestring  # the C quoting json.dumps uses


def event_hash(seq: int, at: datetime, type_: str, actor: str, subject: str,
               data: dict[str, Any] | str, prev_hash: str) -> str:
    """sha256 hex of the canonical form."""
    return hashlib.sha256(canonical(seq, at, type_, actor, subject, data, prev_hash)).hexdigest()


_PLAIN = (str, int, float, bool, type(None))


def clean_data(data: dict[str, Any]) -> dict[str, Any]:
    """Event data made JSON-plain (round-trips exactly) and checked for secrets."""
    for key in data:
        if key in SECRET_KEYS:
            raise ValueError(f"audit data must not hold `{key}`")
    if all(isinstance(k, str) and isinstance(v, _PLAIN) and not isinstance(v, float) for k, v in data.items()):
        return data  # already plain: skip the round trip (the sweeper writes thousands at once)
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def make_record(seq: int, at: datetime, type_: str, actor: str, subject: str,
                data: dict[str, Any], prev_hash: str) -> tuple[AuditRecord, str]:
    """A new chained event after `prev_hash`, and its data text as stored."""
    return make_records(seq, [(type_, actor, subject, data, at)], prev_hash)[0]


def make_records(first_seq: int, events: Iterable[AuditEvent], prev_hash: str) -> list[tuple[AuditRecord, str]]:
    """Events (type, actor, subject, data, at) chained in turn from `first_seq` after `prev_hash`,
    each with its data text as stored. The parts of the canonical form that events share are
    made once (a sweep's 10,000 expiries differ only in seq, subject and prev_hash): ~4 us an
    event instead of ~10, inside the sweep's transaction."""
    out: list[tuple[AuditRecord, str]] = []
    shared: dict[tuple[datetime, str, str, str], tuple[str, str]] = {}
    seq, prev = first_seq, prev_hash
    for type_, actor, subject, data, at in events:
        data = clean_data(data)
        text = data_text(data)
        key = (at, type_, actor, text)
        around = shared.get(key)
        if around is None:
            around = shared[key] = _around_subject(at, type_, actor, text)
        h = hashlib.sha256(_joined(seq, around, subject, prev)).hexdigest()
        out.append((AuditRecord(seq=seq, at=at, type=type_, actor=actor, subject=subject,
                                data=data, prev_hash=prev, hash=h), text))
        seq, prev = seq + 1, h
    return out


@dataclass
class ChainVerifier:
    """Checks events fed in seq order; collects plain problems."""

    expected_seq: int = 1
    prev_hash: str = GENESIS
    count: int = 0
    problems: list[str] = field(default_factory=list)
    max_problems: int = 100

    def feed(self, records: Iterable[AuditRecord]) -> None:
        for r in records:
            self.count += 1
            if r.seq != self.expected_seq:
                self._problem(f"event {r.seq}: expected seq {self.expected_seq} "
                              "(an event was removed, inserted or reordered)")
            if r.prev_hash != self.prev_hash:
                self._problem(f"event {r.seq}: prev_hash does not match the event before it "
                              "(removed, inserted or reordered)")
            want = event_hash(r.seq, r.at, r.type, r.actor, r.subject, r.data, r.prev_hash)
            if want != r.hash:
                self._problem(f"event {r.seq}: hash does not match its content (edited)")
            self.expected_seq = r.seq + 1
            self.prev_hash = r.hash

    def finish(self, head_seq: int, head_hash: str) -> tuple[bool, int, list[str]]:
        """Compare the end of the chain with the stored head (catches a cut tail)."""
        if head_seq != self.expected_seq - 1 or head_hash != self.prev_hash:
            self._problem(f"the chain ends at event {self.expected_seq - 1} but the head says "
                          f"{head_seq} (events removed at the end, or the head was edited)")
        return (not self.problems, self.count, list(self.problems))

    def _problem(self, text: str) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(text)
