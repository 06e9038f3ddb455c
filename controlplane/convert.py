"""Model <-> protobuf: the only place that knows both shapes.

Model objects are the core's dataclasses (controlplane/model.py) and the policy
engine's Decision; times are aware UTC datetimes, durations timedeltas.

Every row sent fits the wire whatever the store holds: text written before the
API's bounds existed (or by an older version) is cut to its bound with a visible
mark (`bounds.clip`), and a request row still over `bounds.MAX_ROW_BYTES` is
sent without its lists (`_slim`), so one row can never break a listing or the
event stream.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2

from controlplane import bounds
from controlplane.bounds import clip
from controlplane.model import (
    ApprovalRecord,
    AuditRecord,
    Change,
    Dashboard,
    ExtensionRecord,
    Recommendation,
    RequestRecord,
    SessionRecord,
)
from jitgate.v1 import access_pb2, types_pb2

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None for an unset time (so the proto field stays unset). A naive time is UTC."""
    return None if value is None else ts_at(value)


def ts_at(value: dt.datetime) -> timestamp_pb2.Timestamp:
    """The Timestamp of a time that is always set. A naive time is UTC."""
    # Integer arithmetic, not Timestamp.FromDatetime (pure Python, ~4x slower on the hot path).
    seconds, micros = divmod((value if value.tzinfo else value.replace(tzinfo=dt.UTC)) - _EPOCH, _US * 10**6)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=(micros // _US) * 1000)


def from_ts(value: timestamp_pb2.Timestamp) -> dt.datetime:
    return value.ToDatetime(tzinfo=dt.UTC)


def dur(value: dt.timedelta | None) -> duration_pb2.Duration | None:
    """A Duration, or None for an unset span (so the proto field stays unset)."""
    return None if value is None else dur_of(value)


def dur_of(value: dt.timedelta) -> duration_pb2.Duration:
    """The Duration of a span that is always set."""
    # Duration's sign rule: seconds and nanos share the sign (FromTimedelta's result, without its cost).
    micros = value // _US
    seconds = abs(micros) // 10**6 * (1 if micros >= 0 else -1)
    return duration_pb2.Duration(seconds=seconds, nanos=(micros - seconds * 10**6) * 1000)


def from_dur(value: duration_pb2.Duration) -> dt.timedelta:
    return value.ToTimedelta()


def _set(msg: Any, **fields: Any) -> Any:
    """Set message fields, skipping None (unset) values; messages are copied in."""
    for name, value in fields.items():
        if value is None:
            continue
        if hasattr(value, "DESCRIPTOR"):
            getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


_REQUEST_STATES: dict[str, types_pb2.RequestState] = {
    v.name.removeprefix("REQUEST_STATE_"): getattr(types_pb2, v.name)
    for v in types_pb2.RequestState.DESCRIPTOR.values}
_REVIEW_STATES: dict[str, types_pb2.ReviewState] = {
    v.name.removeprefix("REVIEW_STATE_"): getattr(types_pb2, v.name)
    for v in types_pb2.ReviewState.DESCRIPTOR.values}


def request_state(name: str) -> types_pb2.RequestState:
    """"ACTIVE" -> REQUEST_STATE_ACTIVE."""
    try:
        return _REQUEST_STATES[name]
    except KeyError:
        raise ValueError(f"unknown request state `{name}`") from None


def request_state_name(value: int) -> str:
    """REQUEST_STATE_ACTIVE -> "ACTIVE"."""
    return types_pb2.RequestState.Name(value).removeprefix("REQUEST_STATE_")


def _review_state(name: str) -> types_pb2.ReviewState:
    if not name:
        return types_pb2.REVIEW_STATE_UNSPECIFIED
    try:
        return _REVIEW_STATES[name]
    except KeyError:
        raise ValueError(f"unknown review state `{name}`") from None


def _extension_state(name: str) -> int:
    return types_pb2.ExtensionState.Value(f"EXTENSION_STATE_{name}") if name else 0


def decision_dict(decision: Any) -> dict[str, Any]:
    """A Decision (or its JSON form) as POLICY.md's decision mapping."""
    if decision is None:
        return {}
    if isinstance(decision, dict):
        return decision
    data = decision.to_json()
    return json.loads(data) if isinstance(data, str) else dict(data)


def decision(value: Any) -> types_pb2.Decision | None:
    """A policy Decision (or POLICY.md's decision JSON) -> Decision message (fields match one to one)."""
    if value is None:
        return None
    if isinstance(value, dict) or not hasattr(value, "approval"):
        data = decision_dict(value)
        if not data:
            return None
        msg = types_pb2.Decision()
        json_format.ParseDict(_decision_for_proto(data), msg, ignore_unknown_fields=True)
        return msg
    # Built straight from the dataclass: json_format costs ~0.5 ms per call on the hot path.
    ap = value.approval
    s = value.session
    return types_pb2.Decision(
        effect=value.effect,
        approval=types_pb2.Approval(
            mode=ap.mode, review=list(ap.review),
            levels=[types_pb2.ApprovalLevel(approvers=list(lv.approvers), min=lv.min) for lv in ap.levels],
        ) if ap is not None else None,
        max_duration=_format_duration(value.max_duration) if value.max_duration is not None else "",
        max_extensions=value.max_extensions or 0,
        session=types_pb2.SessionOptions(pty=s.pty, exec=s.exec, sftp=s.sftp, port_forwarding=s.port_forwarding)
        if s is not None else None,
        rules=list(value.rules), message=clip(value.message or "", bounds.COMPOSED_TEXT),
        policy_version=value.policy_version or "",
        risk=types_pb2.Risk(**value.risk) if getattr(value, "risk", None) else None,
        activate=getattr(value, "activate", "") or "",
        claim_within=_format_duration(value.claim_within) if getattr(value, "claim_within", None) else "",
        max_sessions=getattr(value, "max_sessions", None),
    )


class _Same:
    """A cache key that is its object's identity (a Decision holds lists: it has no hash), keeping
    the object alive while cached so its id cannot be reused."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.value is self.value


@functools.lru_cache(maxsize=1024)
def _decision_of(key: _Same) -> types_pb2.Decision | None:
    return decision(key.value)


def _stored_decision(value: Any) -> types_pb2.Decision | None:
    """`decision(value)` built once per Decision object. The store hands out one frozen Decision per
    stored text (store/requests.py), so a burst of events (10,000 expiries) shares a few; building
    one was ~30% of converting a request (measured). Only for message constructors, which copy it."""
    if value is None or isinstance(value, dict) or not hasattr(value, "approval"):
        return decision(value)
    return _decision_of(_Same(value))


def _format_duration(value: dt.timedelta) -> str:
    from policy.durations import format_duration

    return format_duration(value)


def _decision_for_proto(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if out.get("max_duration") is None:
        out["max_duration"] = ""
    if out.get("max_extensions") is None:
        out.pop("max_extensions", None)
    approval = out.get("approval")
    if approval is None:
        out.pop("approval", None)
    elif isinstance(approval, str):
        out["approval"] = {"mode": approval}
    if out.get("session") is None:
        out.pop("session", None)
    out.pop("errors", None)
    if out.get("claim_within") is None:
        out.pop("claim_within", None)
    if out.get("max_sessions") is None:
        out.pop("max_sessions", None)
    return out


def approval(rec: ApprovalRecord) -> types_pb2.ApprovalRecord:
    return _set(
        types_pb2.ApprovalRecord(), approver=clip(rec.approver, bounds.NAME), level=rec.level,
        approved=rec.approved, comment=clip(rec.comment or "", bounds.FREE_TEXT), at=ts(rec.at),
    )


def extension(rec: ExtensionRecord) -> types_pb2.Extension:
    return _set(
        types_pb2.Extension(), id=rec.id, request_id=rec.request_id, number=rec.number,
        duration=dur(rec.duration), justification=clip(rec.justification or "", bounds.FREE_TEXT),
        state=_extension_state(rec.state), decision=_stored_decision(rec.decision),
        created_at=ts(rec.created_at), decided_at=ts(rec.decided_at),
    ) if rec is not None else types_pb2.Extension()


def access_request(rec: RequestRecord) -> types_pb2.AccessRequest:
    """RequestRecord -> AccessRequest (one constructor call: unset times stay unset), at most MAX_ROW_BYTES."""
    extensions = []
    for ext in rec.extensions or []:
        ext_msg = extension(ext)
        ext_msg.approvals.extend(approval(a) for a in ext.approvals or [])
        extensions.append(ext_msg)
    msg = types_pb2.AccessRequest(
        id=clip(rec.id, bounds.ID), user=clip(rec.user, bounds.NAME), resource=clip(rec.resource, bounds.NAME),
        kind=rec.kind or "", login=clip(rec.login or "", bounds.NAME), role=clip(rec.role or "", bounds.NAME),
        duration=dur(rec.duration), reason=clip(rec.reason or "", bounds.FREE_TEXT),
        ticket=clip(rec.ticket or "", bounds.TICKET), emergency=bool(rec.emergency), state=request_state(rec.state),
        decision=_stored_decision(rec.decision), created_at=ts(rec.created_at), activated_at=ts(rec.activated_at),
        expires_at=ts(rec.expires_at), ended_at=ts(rec.ended_at), extensions_used=rec.extensions_used or 0,
        current_level=rec.current_level or 0, review_state=_review_state(rec.review_state or ""),
        end_reason=clip(rec.end_reason or "", bounds.COMPOSED_TEXT),
        message=clip(rec.message or "", bounds.COMPOSED_TEXT),
        approvals=[approval(a) for a in rec.approvals or []], extensions=extensions, start=ts(rec.start),
    )
    return msg if msg.ByteSize() <= bounds.MAX_ROW_BYTES else _slim(msg)


_SLIM_NOTE = ("[jitgate: this request is {size} bytes, over the {limit}-byte row limit; its approvals, "
              "extensions and matched rules are left out here (the audit log has them)]")


def _slim(msg: types_pb2.AccessRequest) -> types_pb2.AccessRequest:
    """A request row over the row limit without its lists (state, times and text stay), marked in `message`."""
    size = msg.ByteSize()
    del msg.approvals[:]
    del msg.extensions[:]
    del msg.decision.rules[:]
    note = _SLIM_NOTE.format(size=size, limit=bounds.MAX_ROW_BYTES)
    msg.message = f"{msg.message} {note}" if msg.message else note
    return msg


def session(rec: SessionRecord) -> types_pb2.Session:
    """SessionRecord -> Session."""
    return _set(
        types_pb2.Session(), id=clip(rec.id, bounds.ID), grant_id=clip(rec.grant_id, bounds.ID),
        user=clip(rec.user, bounds.NAME), resource=clip(rec.resource, bounds.NAME),
        kind=clip(rec.kind or "", bounds.WORD),
        login=clip(rec.login or "", bounds.NAME), role=clip(rec.role or "", bounds.NAME),
        broker=clip(rec.broker or "", bounds.NAME), client_address=clip(rec.client_address or "", bounds.ADDRESS),
        started_at=ts(rec.started_at), ended_at=ts(rec.ended_at), end_reason=clip(rec.end_reason or "", bounds.WORD),
        bytes_in=rec.bytes_in or 0, bytes_out=rec.bytes_out or 0,
        recording_ref=clip(rec.recording_ref or "", bounds.RECORDING_REF),
        recording_hash=clip(rec.recording_hash or "", bounds.DIGEST), last_activity_at=ts(rec.last_activity_at),
    )


def recommendation(rec: Recommendation | None) -> types_pb2.Recommendation | None:
    """A recommend/ Recommendation (duplicated fields by name) -> message."""
    if rec is None:
        return None
    duration = getattr(rec, "duration", None)
    minutes = getattr(rec, "minutes", None)
    if duration is None and minutes is not None:
        duration = dt.timedelta(minutes=minutes)
    if minutes is None and duration is not None:
        minutes = int(duration.total_seconds() // 60)
    max_duration = getattr(rec, "max_duration", "") or ""
    if isinstance(max_duration, dt.timedelta):
        from policy import format_duration

        max_duration = format_duration(max_duration)
    return _set(
        types_pb2.Recommendation(), duration=dur(duration), minutes=int(minutes or 0),
        explanation=getattr(rec, "explanation", "") or "", fallback=bool(getattr(rec, "fallback", False)),
        model_version=getattr(rec, "model_version", "") or "", max_duration=max_duration,
    )


def _clip_strings(value: Any, limit: int) -> Any:
    """`value` (JSON-like) with every string cut to `limit` bytes."""
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, dict):
        return {k: _clip_strings(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip_strings(v, limit) for v in value]
    return value


def bounded_json(value: Any, limit: int = bounds.MAX_ROW_BYTES - bounds.KiB) -> str:
    """`value` as JSON text of at most about `limit` bytes, still valid JSON.

    Over the limit (a row stored before the bounds), its strings are cut to the
    free-text bound (marked); if that is not enough, a note with the size stands in.
    """
    text = json.dumps(value, sort_keys=True, default=str)
    if len(text) <= limit:
        return text
    text = json.dumps(_clip_strings(value, bounds.FREE_TEXT), sort_keys=True, default=str)
    if len(text) <= limit:
        return text
    return json.dumps({"jitgate_cut": f"{len(text)} bytes even with its text cut, over the {limit}-byte row limit"})


def audit_event(rec: AuditRecord) -> types_pb2.AuditEvent:
    """AuditRecord -> AuditEvent; `data_json` of an oversized event is cut (so the client cannot re-hash it)."""
    return _set(
        types_pb2.AuditEvent(), seq=rec.seq, at=ts(rec.at), type=clip(rec.type, bounds.WORD),
        actor=clip(rec.actor or "", bounds.NAME), subject=clip(rec.subject or "", bounds.NAME),
        data_json=bounded_json(rec.data or {}), prev_hash=rec.prev_hash or "", hash=rec.hash or "",
    )


def change_event(change: Change) -> types_pb2.Event:
    """A core Change -> the Event watchers receive."""
    # One constructor call (None leaves a field unset): _set's CopyFrom per field cost ~40% more.
    return types_pb2.Event(
        seq=change.seq, type=change.type, at=ts(change.at),
        request=access_request(change.request) if change.request is not None else None,
        session=session(change.session) if change.session is not None else None,
        lock=_lock(change.lock) if change.lock is not None else None,
    )


def _lock(lock: Any) -> Any:
    from jitgate.v1 import locks_pb2

    return locks_pb2.Lock(id=lock.id, target=lock.target, value=lock.value, reason=lock.reason,
                          created_by=lock.created_by, created_at=ts(lock.created_at), until=ts(lock.until),
                          active=True)


def snapshot_event(rec: RequestRecord) -> types_pb2.Event:
    return _set(types_pb2.Event(), seq=0, type="snapshot", request=access_request(rec))


def fit(messages: Any, budget: int) -> list[Any]:
    """The leading messages whose encoded sizes add up to at most `budget` bytes."""
    out: list[Any] = []
    used = 0
    for msg in messages:
        used += msg.ByteSize() + 8  # + the field's tag and length
        if used > budget:
            break
        out.append(msg)
    return out


def dashboard(rec: Dashboard) -> access_pb2.Dashboard:
    """The dashboard; each list holds what fits in a third of a message (in the core's order)."""
    msg = access_pb2.Dashboard(
        expired_24h=int(rec.expired_24h), avg_granted_minutes=float(rec.avg_granted_minutes or 0.0),
        avg_used_minutes=float(rec.avg_used_minutes or 0.0), approval_rate=float(rec.approval_rate or 0.0),
    )
    share = bounds.ROWS_BUDGET // 3
    msg.active.extend(fit((access_request(r) for r in rec.active), share))
    msg.pending.extend(fit((access_request(r) for r in rec.pending), share))
    msg.reviews_owed.extend(fit((access_request(r) for r in rec.reviews_owed), share))
    return msg


def to_dict(msg: Any) -> dict[str, Any]:
    """A message as a JSON-ready dict with the .proto field names (for `--output json`)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


__all__ = [
    "access_request", "approval", "audit_event", "bounded_json", "change_event", "dashboard",
    "decision", "decision_dict", "dur", "dur_of", "extension", "fit", "from_dur", "from_ts", "recommendation",
    "request_state", "request_state_name", "session", "snapshot_event", "to_dict", "ts", "ts_at",
]
