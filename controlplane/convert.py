"""Model <-> protobuf: the only place that knows both shapes.

Model objects are the core's dataclasses (controlplane/model.py) and the policy
engine's Decision; times are aware UTC datetimes, durations timedeltas.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from jitgate.v1 import access_pb2, types_pb2


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)


def ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp, or None for an unset time (so the proto field stays unset). A naive time is UTC."""
    if value is None:
        return None
    # Integer arithmetic, not Timestamp.FromDatetime (pure Python, ~4x slower on the hot path).
    seconds, micros = divmod((value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)) - _EPOCH, _US * 10**6)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=(micros // _US) * 1000)


def from_ts(value: timestamp_pb2.Timestamp) -> dt.datetime:
    return value.ToDatetime(tzinfo=dt.timezone.utc)


def dur(value: dt.timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
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


_REQUEST_STATES = {v.name.removeprefix("REQUEST_STATE_"): v.number
                   for v in types_pb2.RequestState.DESCRIPTOR.values}
_REVIEW_STATES = {v.name.removeprefix("REVIEW_STATE_"): v.number
                  for v in types_pb2.ReviewState.DESCRIPTOR.values}


def request_state(name: str) -> int:
    """"ACTIVE" -> REQUEST_STATE_ACTIVE."""
    try:
        return _REQUEST_STATES[name]
    except KeyError:
        raise ValueError(f"unknown request state `{name}`") from None


def request_state_name(value: int) -> str:
    """REQUEST_STATE_ACTIVE -> "ACTIVE"."""
    return types_pb2.RequestState.Name(value).removeprefix("REQUEST_STATE_")


def _review_state(name: str) -> int:
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
        rules=list(value.rules), message=value.message or "", policy_version=value.policy_version or "",
        risk=types_pb2.Risk(**value.risk) if getattr(value, "risk", None) else None,
    )


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
    return out


def approval(rec: Any) -> types_pb2.ApprovalRecord:
    return _set(
        types_pb2.ApprovalRecord(), approver=rec.approver, level=rec.level, approved=rec.approved,
        comment=rec.comment or "", at=ts(rec.at),
    )


def extension(rec: Any) -> types_pb2.Extension:
    return _set(
        types_pb2.Extension(), id=rec.id, request_id=rec.request_id, number=rec.number,
        duration=dur(rec.duration), justification=rec.justification or "",
        state=_extension_state(rec.state), decision=decision(rec.decision),
        created_at=ts(rec.created_at), decided_at=ts(rec.decided_at),
    ) if rec is not None else types_pb2.Extension()


def access_request(rec: Any) -> types_pb2.AccessRequest:
    """RequestRecord -> AccessRequest (one constructor call: unset times stay unset)."""
    extensions = []
    for ext in rec.extensions or []:
        ext_msg = extension(ext)
        ext_msg.approvals.extend(approval(a) for a in ext.approvals or [])
        extensions.append(ext_msg)
    return types_pb2.AccessRequest(
        id=rec.id, user=rec.user, resource=rec.resource, kind=rec.kind or "",
        login=rec.login or "", role=rec.role or "", duration=dur(rec.duration), reason=rec.reason or "",
        ticket=rec.ticket or "", emergency=bool(rec.emergency), state=request_state(rec.state),
        decision=decision(rec.decision), created_at=ts(rec.created_at), activated_at=ts(rec.activated_at),
        expires_at=ts(rec.expires_at), ended_at=ts(rec.ended_at), extensions_used=rec.extensions_used or 0,
        current_level=rec.current_level or 0, review_state=_review_state(rec.review_state or ""),
        end_reason=rec.end_reason or "", message=rec.message or "",
        approvals=[approval(a) for a in rec.approvals or []], extensions=extensions,
    )


def session(rec: Any) -> types_pb2.Session:
    """SessionRecord -> Session."""
    return _set(
        types_pb2.Session(), id=rec.id, grant_id=rec.grant_id, user=rec.user, resource=rec.resource,
        kind=rec.kind or "", login=rec.login or "", role=rec.role or "", broker=rec.broker or "",
        client_address=rec.client_address or "", started_at=ts(rec.started_at), ended_at=ts(rec.ended_at),
        end_reason=rec.end_reason or "", bytes_in=rec.bytes_in or 0, bytes_out=rec.bytes_out or 0,
        recording_ref=rec.recording_ref or "", recording_hash=rec.recording_hash or "",
        last_activity_at=ts(rec.last_activity_at),
    )


def recommendation(rec: Any) -> types_pb2.Recommendation | None:
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


def audit_event(rec: Any) -> types_pb2.AuditEvent:
    return _set(
        types_pb2.AuditEvent(), seq=rec.seq, at=ts(rec.at), type=rec.type, actor=rec.actor or "",
        subject=rec.subject or "", data_json=json.dumps(rec.data or {}, sort_keys=True, default=str),
        prev_hash=rec.prev_hash or "", hash=rec.hash or "",
    )


def change_event(change: Any) -> types_pb2.Event:
    """A core Change -> the Event watchers receive."""
    return _set(
        types_pb2.Event(), seq=change.seq, type=change.type, at=ts(change.at),
        request=access_request(change.request) if change.request is not None else None,
        session=session(change.session) if change.session is not None else None,
    )


def snapshot_event(rec: Any) -> types_pb2.Event:
    return _set(types_pb2.Event(), seq=0, type="snapshot", request=access_request(rec))


def dashboard(rec: Any) -> access_pb2.Dashboard:
    msg = access_pb2.Dashboard(
        expired_24h=int(rec.expired_24h), avg_granted_minutes=float(rec.avg_granted_minutes or 0.0),
        avg_used_minutes=float(rec.avg_used_minutes or 0.0), approval_rate=float(rec.approval_rate or 0.0),
    )
    msg.active.extend(access_request(r) for r in rec.active)
    msg.pending.extend(access_request(r) for r in rec.pending)
    msg.reviews_owed.extend(access_request(r) for r in rec.reviews_owed)
    return msg


def to_dict(msg: Any) -> dict[str, Any]:
    """A message as a JSON-ready dict with the .proto field names (for `--output json`)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def audit_line(rec: types_pb2.AuditEvent) -> dict[str, Any]:
    """An audit event as one JSONL export object (data decoded, not a string)."""
    return {
        "seq": rec.seq, "at": rec.at.ToJsonString(), "type": rec.type, "actor": rec.actor,
        "subject": rec.subject, "data": json.loads(rec.data_json or "{}"),
        "prev_hash": rec.prev_hash, "hash": rec.hash,
    }


__all__ = [
    "access_request", "approval", "audit_event", "audit_line", "change_event", "dashboard", "decision",
    "decision_dict", "dur", "extension", "from_dur", "from_ts", "recommendation", "request_state",
    "request_state_name", "session", "snapshot_event", "to_dict", "ts",
]
