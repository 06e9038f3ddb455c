"""The recommender behind a real `jitgate server` (mTLS on loopback): the demo's model,
`jitgate request` without a duration, `recommend export` over gRPC, and a model
retrained from the store while the server runs."""
from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.demo_model import ensure_demo_model
from cli.main import cli
from controlplane.core import AccessCore, StaticPolicy
from controlplane.local_history import db_path
from controlplane.store import open_store
from jitgate.v1 import access_pb2
from policy import load_policy_set
from recommend import read_history
from recommend.history import row_from_json
from tests.cluster import REPO, ControlPlane

RELOAD_DEADLINE = 30.0  # the server looks for a new model every 2 s
DEMO_TEST_ROWS = 1200


def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _finished_grant(data: Path, policy_set, minutes_used: float) -> dict:
    """One finished grant with a 25-minute database session, written by a core on the store."""
    clock = [datetime.now(UTC) - timedelta(hours=3)]
    core = AccessCore(open_store(str(db_path(data))), StaticPolicy(policy_set), clock=lambda: clock[0],
                      brokers={"broker"})
    try:
        rec, _ = core.requests.create_request("alice", "demo-db", role="readonly", duration=timedelta(minutes=60),
                                     reason="weekly report", ticket="RPT-1")
        token, _ = core.credentials.issue_database_token("alice", rec.id)
        session, _, _ = core.sessions.authorize_session("broker", "postgres", "demo-db", db_token=token, channel="pg")
        clock[0] += timedelta(minutes=minutes_used)
        core.sessions.end_session("broker", session.id, "client_exit", ended_at=clock[0], last_activity_at=clock[0])
        core.grants.revoke("alice", rec.id, "done")
        return next(iter(core.audit.export_history(7)))
    finally:
        core.ledger.store.close()


@pytest.mark.timeout(120)
def test_demo_model_request_without_duration_export_and_live_retrain(tmp_path: Path) -> None:
    policy_set = load_policy_set(REPO / "policies.yaml", run_tests=False)
    cp = ControlPlane(tmp_path, start=False)
    data = cp.data.root
    # Before the first start, as `jitgate demo` does; on fewer rows than the demo's 3000 (training
    # time grows with them), still enough for the model to answer for orders-db with your last grants.
    demo = ensure_demo_model(data, policy_set, rows=DEMO_TEST_ROWS)
    assert demo.trained and demo.imported_rows == DEMO_TEST_ROWS > 1000 and demo.version
    grant = _finished_grant(data, policy_set, 25)
    with cp.start():
        alice, admin = cp.cli_env("alice"), cp.cli_env("admin")

        # `jitgate request` with no duration: the model's recommendation, explained, is the duration asked
        code, out, err = _cli(alice, "request", "orders-db", "--role", "readonly", "--reason", "monthly orders report",
                              "--dry-run")
        assert code == 0, err
        line = next(ln for ln in out.splitlines() if "recommended" in ln)
        assert "fallback" not in line and "your last" in line and "on orders-db used" in line, out
        code, out, err = _cli(alice, "request", "demo-db", "--role", "readonly", "--reason", "weekly report",
                              "--output", "json")
        assert code == 0, err
        created = json.loads(out)
        rec = created["recommendation"]
        assert rec["model_version"] == demo.version and not rec.get("fallback", False)
        assert created["request"]["duration"] == rec["duration"] and "demo-db" in rec["explanation"]

        # export over gRPC round-trips through read_history (imported rows are not the server's grants)
        out_file = tmp_path / "export.jsonl"
        code, _, err = _cli(admin, "recommend", "export", "--days", "7", "--out", str(out_file))
        assert code == 0 and "wrote 1 grants" in err, err
        exported = read_history(out_file)
        assert [r.to_json() for r in exported] == [row_from_json(grant).to_json()]
        assert exported[0].used_minutes == pytest.approx(25) and exported[0].labels == {"env": "dev"}
        code, _, err = _cli(alice, "recommend", "export")
        assert code == 1 and "PERMISSION_DENIED" in err

        # retrained from the store while the server runs: the server answers with the new model
        code, out, err = _cli({}, "recommend", "train", "--data-dir", str(data), "--rounds", "30", "--force",
                              "--output", "json")
        assert code == 0, err
        trained = json.loads(out)
        assert trained["version"] != demo.version and "1 grants" in trained["source"]
        stub = cp.client("alice").access
        ask = access_pb2.RecommendDurationRequest(resource="orders-db", role="readonly", reason="monthly report")
        deadline = time.monotonic() + RELOAD_DEADLINE
        while stub.RecommendDuration(ask, timeout=10).model_version != trained["version"]:
            assert time.monotonic() < deadline, "the server did not pick up the retrained model"
            time.sleep(0.2)
        # a corrupt model file: the server says so in its log, keeps the loaded model and keeps answering
        (data / "model" / "model.txt").write_text("garbage\n")
        deadline = time.monotonic() + RELOAD_DEADLINE
        while "checksum does not match" not in cp.log():
            after = stub.RecommendDuration(ask, timeout=10)
            assert after.model_version == trained["version"] and after.minutes > 0
            assert time.monotonic() < deadline, "the server did not look at the corrupt model"
            time.sleep(0.2)
        after = stub.RecommendDuration(ask, timeout=10)
        assert after.model_version == trained["version"] and after.minutes > 0
        assert re.search(r"duration .* recommended", _cli(alice, "request", "demo", "--login", "demo", "--reason",
                                                          "first look", "--dry-run")[1])

