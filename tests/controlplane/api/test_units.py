"""Unit tests of the API side's plain parts: config, event fan-out, conversions."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane import convert
from controlplane.config import ConfigError, build_config
from controlplane.events import EventHub, type_matches
from controlplane.model import Change, RequestRecord
from jitgate.v1 import types_pb2


def _record(user: str = "alice", rid: str = "r1") -> RequestRecord:
    now = dt.datetime(2026, 11, 18, 10, tzinfo=dt.UTC)
    return RequestRecord(id=rid, user=user, resource="web-dev-01", kind="ssh", login="deploy", role="",
                         duration=dt.timedelta(minutes=30), reason="r", ticket="", emergency=False,
                         state="ACTIVE", decision=None, created_at=now, activated_at=now,
                         expires_at=now + dt.timedelta(minutes=30))


def test_config_precedence_and_refusals(tmp_path: Path):
    cfg_file = tmp_path / "server.yaml"
    cfg_file.write_text("listen: 127.0.0.1:9000\nadmins: [sam]\npolicies: /etc/p.yaml\n")
    cfg = build_config(config_file=cfg_file, data_dir=tmp_path, listen="127.0.0.1:9100")
    assert (cfg.listen, cfg.admins, cfg.brokers, cfg.policies) == (
        "127.0.0.1:9100", frozenset({"sam"}), frozenset({"broker"}), Path("/etc/p.yaml"))
    cfg_file.write_text("listne: 1\n")
    with pytest.raises(ConfigError, match="unknown key `listne`"):
        build_config(config_file=cfg_file, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="host:port"):
        build_config(data_dir=tmp_path, policies=tmp_path / "p.yaml", listen="nohost")
    with pytest.raises(ConfigError, match="no policies"):
        build_config(data_dir=tmp_path / "empty")
    env_cfg = build_config(policies=tmp_path / "p.yaml", environ={"JITGATE_DATA_DIR": str(tmp_path / "d")})
    assert env_cfg.data_dir == tmp_path / "d"


def test_type_filter_words():
    assert type_matches("grant.expired", ())
    assert type_matches("grant.expired", ("grant.",))
    assert not type_matches("grant.expired", ("grant",))
    assert type_matches("grant.expired", ("request.created", "grant.expired"))


def test_hub_fans_out_by_owner_and_cuts_off_slow_watchers():
    async def scenario() -> None:
        hub = EventHub(asyncio.get_running_loop(), queue_size=10)
        hub.start()
        admin = hub.subscribe("ada", see_all=True)
        alice = hub.subscribe("alice", see_all=False)
        hub.publish(Change(1, "grant.activated", _record().created_at, request=_record("alice", "a")))
        hub.publish(Change(2, "grant.activated", _record().created_at, request=_record("bob", "b")))
        first = await asyncio.wait_for(admin.queue.get(), 5)  # converted in the hub's thread
        second = await asyncio.wait_for(admin.queue.get(), 5)
        hub.stop()
        assert [first.request.id, second.request.id] == ["a", "b"]
        assert alice.queue.get_nowait().request.id == "a" and alice.queue.empty()
        hub.unsubscribe(admin)
        for n in range(11):  # nobody reads alice's queue: she is cut off, not silently skipped
            hub.publish_event(types_pb2.Event(seq=10 + n, type="x", request=types_pb2.AccessRequest(user="alice")))
        assert alice.overflowed and hub.subscribers == 0
        items = [alice.queue.get_nowait() for _ in range(alice.queue.qsize())]
        assert items[-1] is None and len(items) == 11

    asyncio.run(scenario())


def test_request_conversion_round_trips_times_and_states():
    msg = convert.access_request(_record())
    assert msg.state == types_pb2.REQUEST_STATE_ACTIVE
    assert msg.expires_at.ToSeconds() - msg.activated_at.ToSeconds() == 1800
    assert not msg.HasField("ended_at") and not msg.HasField("decision")
    assert convert.request_state_name(msg.state) == "ACTIVE"


def test_decision_conversion_matches_policy_json():
    from policy import Approval, ApprovalLevel, Decision, SessionOptions

    d = Decision("allow", Approval("levels", [ApprovalLevel(["manager", "owner"], 1)]), dt.timedelta(hours=2), 1,
                 SessionOptions(True, True, False, False), ["prod"], "", "sha256:x")
    msg = convert.decision(d)
    from google.protobuf import json_format

    assert json_format.MessageToDict(msg, preserving_proto_field_name=True) == {
        k: v for k, v in convert.decision_dict(d).items() if k != "errors" and v not in ("", [], None, False)
    } | {"session": {"pty": True, "exec": True}, "approval": {"mode": "levels", "levels": [
        {"approvers": ["manager", "owner"], "min": 1}]}}


# -- fast conversions equal the protobuf helpers ------------------------------------------------


_TIMES = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                      timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-7)),
                                                 dt.timezone(dt.timedelta(hours=5, minutes=30))]))


@settings(max_examples=300, deadline=None)
@given(_TIMES, st.timedeltas(min_value=dt.timedelta(days=-10**5), max_value=dt.timedelta(days=10**5)))
def test_ts_and_dur_equal_the_protobuf_helpers(when, span):
    from google.protobuf import duration_pb2, timestamp_pb2

    want_ts = timestamp_pb2.Timestamp()
    want_ts.FromDatetime(when.astimezone(dt.UTC) if when.tzinfo else when)
    want_dur = duration_pb2.Duration()
    want_dur.FromTimedelta(span)
    assert convert.ts(when) == want_ts and convert.dur(span) == want_dur
    assert convert.from_ts(convert.ts(when)) == (when if when.tzinfo else when.replace(tzinfo=dt.UTC))
    assert convert.from_dur(convert.dur(span)) == span


def test_full_request_conversion_sets_every_field():
    from google.protobuf import json_format

    from controlplane.model import ApprovalRecord, ExtensionRecord

    rec = _record()
    now = rec.created_at
    rec.state, rec.review_state, rec.ended_at, rec.end_reason, rec.message = "REVOKED", "FLAGGED", now, "gone", "m"
    rec.extensions_used, rec.current_level = 1, 2
    rec.approvals = [ApprovalRecord("bob", 0, True, "ok", now), ApprovalRecord("sam", 1, False, "", now)]
    rec.extensions = [ExtensionRecord(id="r1.1", request_id="r1", number=1, duration=dt.timedelta(minutes=15),
                                      justification="more", state="APPROVED", decision=None,
                                      approvals=[ApprovalRecord("sam", 0, True, "", now)], created_at=now,
                                      decided_at=now)]
    got = json_format.MessageToDict(convert.access_request(rec), preserving_proto_field_name=True)
    at = "2026-11-18T10:00:00Z"
    assert got == {
        "id": "r1", "user": "alice", "resource": "web-dev-01", "kind": "ssh", "login": "deploy", "duration": "1800s",
        "reason": "r", "state": "REQUEST_STATE_REVOKED", "created_at": at, "activated_at": at,
        "expires_at": "2026-11-18T10:30:00Z", "ended_at": at, "extensions_used": 1, "current_level": 2,
        "review_state": "REVIEW_STATE_FLAGGED", "end_reason": "gone", "message": "m",
        "approvals": [{"approver": "bob", "approved": True, "comment": "ok", "at": at},
                      {"approver": "sam", "level": 1, "at": at}],
        "extensions": [{"id": "r1.1", "request_id": "r1", "number": 1, "duration": "900s", "justification": "more",
                        "state": "EXTENSION_STATE_APPROVED", "created_at": at, "decided_at": at,
                        "approvals": [{"approver": "sam", "approved": True, "at": at}]}],
    }
    with pytest.raises(ValueError):
        convert.request_state("SLEEPING")
