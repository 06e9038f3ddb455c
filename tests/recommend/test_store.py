"""The recommender and the control plane's store: import, train from the store, a model
replaced or corrupted under a serving core. Real SQLite store, real LightGBM, the
example policies."""
from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from controlplane.core import AccessCore, StaticPolicy
from controlplane.local_history import db_path, history_from_store
from controlplane.store import open_store
from policy import load_policy_set
from recommend import HistoryRow, Recommender, write_history
from recommend.demo import demo_history, demo_specs
from recommend.synth import ResourceSpec, generate

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies.yaml"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def policy_set():
    return load_policy_set(POLICIES, run_tests=False)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["recommend", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _core(data_dir: Path, policy_set, recommender) -> AccessCore:
    return AccessCore(open_store(str(db_path(data_dir))), StaticPolicy(policy_set), recommender=recommender)


def _row(user: str, resource: str, used: float, days_ago: float, **kw) -> HistoryRow:
    kind = "postgres" if resource.endswith("db") else "ssh"
    access = {"role": kw.pop("role", "readonly")} if kind == "postgres" else {"login": kw.pop("login", "deploy")}
    return HistoryRow(user=user, resource=resource, kind=kind, labels=kw.pop("labels", {"env": "prod"}),
                      requested_at=NOW - timedelta(days=days_ago), asked_minutes=60, used_minutes=used,
                      reason=kw.pop("reason", "monthly report"), **access, **kw)


def test_imported_history_feeds_recommendations_and_nothing_else(tmp_path: Path, policy_set) -> None:
    data = tmp_path / "data"
    mine = [_row("alice", "orders-db", used, days_ago=30 - i) for i, used in enumerate([35, 50, 40, 45, 38])]
    theirs = [_row("bob", "orders-db", 20 + 5 * i, days_ago=60 - i) for i in range(10)]
    older = [_row("alice", "orders-db", 200, days_ago=400)]  # older than any window: still history
    history = tmp_path / "history.jsonl"
    write_history(older + theirs + mine, history)

    code, out, err = _run("import", str(history), "--data-dir", str(data), "--output", "json")
    assert code == 0, err
    sha = hashlib.sha256(history.read_bytes()).hexdigest()
    assert json.loads(out) == {"rows": 16, "sha256": sha, "store": str(data / "jitgate.db")}
    assert data.stat().st_mode & 0o077 == 0  # a data directory the server accepts

    ask = {"user": "alice", "resource": "orders-db", "kind": "postgres", "labels": {"env": "prod"},
           "role": "readonly", "reason": "monthly report"}
    code, out, err = _run("explain", json.dumps(ask), "--data-dir", str(data))  # history from the store
    assert code == 0 and "your last 5 on orders-db used 35-50 min" in out, err

    core = _core(data, policy_set, Recommender(data / "model"))  # no model yet: fallback statistics
    try:
        answer = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert answer.fallback
        assert "your last 5 on orders-db used 35-50 min" in answer.explanation
        assert "80% of 16 past grants on orders-db" in answer.explanation
        # never requests or grants: no policy history, nothing to list or export
        probe, _ = core.requests.create_request("alice", "orders-db", role="readonly", duration=None,
                                       reason="monthly report", ticket="", emergency=False, dry_run=True)
        assert probe.duration == answer.duration
        assert probe.history.get("granted_90d", 0) == 0 and probe.history.get("median_minutes", 0) == 0
        assert core.requests.list_requests("admin")[0] == [] and list(core.audit.export_history(3650)) == []
        events = core.audit.audit_events(type="history.*")
        assert [(e.type, e.actor, e.data) for e in events] == [
            ("history.imported", "local-admin", {"rows": 16, "sha256": sha, "file": str(history)})]
    finally:
        core.ledger.store.close()

    core = _core(data, policy_set, Recommender(None))  # a serving core, as a running server keeps it
    try:
        before = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        code, _, err = _run("import", str(history), "--data-dir", str(data))  # the same file again
        assert code == 1 and "was imported before" in err and "Traceback" not in err
        assert len(core.audit.audit_events(type="history.*")) == 1
        newer = tmp_path / "newer.jsonl"
        write_history([_row("alice", "orders-db", 90 + i, days_ago=5 - i) for i in range(5)], newer)
        assert _run("import", str(newer), "--data-dir", str(data))[0] == 0  # another process imports
        after = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert "your last 5 on orders-db used 35-50 min" in before.explanation
        assert "your last 5 on orders-db used 1 h 30 min to 1 h 34 min" in after.explanation, after
        assert [e.data["rows"] for e in core.audit.audit_events(type="history.*")] == [16, 5]
        assert core.audit.verify_audit()[0]
        with core.ledger.store.read() as tx:
            assert tx.count_imported_history() == 21
    finally:
        core.ledger.store.close()


def test_a_bad_file_imports_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good = _row("alice", "orders-db", 30, days_ago=1).to_json()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "used_minutes": -1}) + "\n")
    code, _, err = _run("import", str(bad), "--data-dir", str(data))
    assert code == 1 and f"{bad}:2: field `used_minutes` must be a number >= 0" in err
    assert not (data / "jitgate.db").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, _, err = _run("import", str(empty), "--data-dir", str(data))
    assert code == 1 and "holds no history rows" in err


def test_train_from_the_store_and_a_serving_recommender_picks_the_model_up(tmp_path: Path, policy_set) -> None:
    data = tmp_path / "data"
    history = tmp_path / "synth.jsonl"
    write_history(generate(1200, seed=4, start=NOW - timedelta(days=366)), history)
    assert _run("import", str(history), "--data-dir", str(data))[0] == 0
    serving = Recommender(data / "model", check_every=0)  # started before any model exists
    assert serving.model_version is None

    code, out, err = _run("train", "--data-dir", str(data), "--rounds", "40", "--output", "json")
    assert code == 0, err
    first = json.loads(out)
    assert first["replaced"] and first["rows"] == 1200 and "0 grants, 1200 imported" in first["source"]
    assert Recommender(data / "model").model_version == first["version"]  # a new process loads it

    core = _core(data, policy_set, serving)
    try:
        answer = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert serving.model_version == first["version"] and answer.model_version == first["version"]
        code, out, err = _run("train", "--data-dir", str(data), "--rounds", "25", "--force", "--output", "json")
        assert code == 0, err
        second = json.loads(out)
        assert second["version"] != first["version"]
        answer = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert answer.model_version == second["version"]  # no restart
    finally:
        core.ledger.store.close()


def test_store_history_takes_labels_from_the_policies(tmp_path: Path, policy_set) -> None:
    data = tmp_path / "data"
    clock = [NOW - timedelta(hours=3)]
    core = AccessCore(open_store(str(db_path(data))), StaticPolicy(policy_set), clock=lambda: clock[0],
                      brokers={"broker"})
    try:
        rec, _ = core.requests.create_request("alice", "demo-db", role="readonly", duration=timedelta(minutes=60),
                                     reason="weekly report", ticket="", emergency=False)
        token, _ = core.credentials.issue_database_token("alice", rec.id)
        session, _, _ = core.sessions.authorize_session("broker", "postgres", "demo-db", "", "", "", 0, token, "", "pg")
        clock[0] += timedelta(minutes=25)
        core.sessions.end_session("broker", session.id, "client_exit", 0, 0, "", "", clock[0], clock[0])
        core.grants.revoke("alice", rec.id, "done")
    finally:
        core.ledger.store.close()
    found = history_from_store(data, policy_set)
    assert (found.grants, found.imported, found.warnings) == (1, 0, [])
    assert found.rows[0].labels == {"env": "dev"} and found.rows[0].used_minutes == pytest.approx(25)
    bare = history_from_store(data)  # no policies, no imported rows to take labels from
    assert bare.rows[0].labels == {} and "no labels known for demo-db" in bare.warnings[0]


def test_a_corrupt_model_means_fallbacks_and_the_core_keeps_answering(tmp_path: Path, policy_set,
                                                                      trained_dir: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(trained_dir, data / "model")
    serving = Recommender(data / "model", check_every=0)
    core = _core(data, policy_set, serving)
    try:
        good = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert not good.fallback and good.model_version
        (data / "model" / "model.txt").write_text("tree\nnot a model\n")
        still = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert still.model_version == good.model_version  # the loaded model keeps serving
        assert "corrupt" in (serving.load_error or "")
        fresh = Recommender(data / "model")  # a restart with the corrupt file: clear error, fallback
        assert "checksum does not match" in (fresh.load_error or "")
        core.history.recommender = fresh
        answer = core.history.recommend("alice", "orders-db", role="readonly", reason="monthly report")
        assert answer.fallback and answer.duration > timedelta(0) and answer.model_version == ""
        created, rec = core.requests.create_request("alice", "demo-db", role="readonly", duration=None,
                                           reason="weekly report", ticket="", emergency=False)
        assert rec is not None and rec.fallback and created.duration == rec.duration
    finally:
        core.ledger.store.close()


def test_demo_history_is_about_the_policies(policy_set) -> None:
    resources, people = demo_specs(policy_set)
    assert {r.name for r in resources} == {"demo", "demo-db", "web-dev-01", "web-staging-01", "web-prod-01",
                                           "orders-db"}
    by_name = {p.name: p for p in people}
    assert {"alice", "bob", "sam", "cora"} <= set(by_name)
    assert "orders-db" not in by_name["cora"].resources  # contractors have no production access
    rows = demo_history(policy_set, rows=600, now=NOW)
    assert rows == demo_history(policy_set, rows=600, now=NOW)  # deterministic
    for row in rows:
        res = policy_set.resources[row.resource]
        assert row.user in by_name and row.resource in by_name[row.user].resources
        assert row.labels == res.labels
        assert (row.login in res.logins) if row.kind == "ssh" else (row.role in res.roles)
        assert NOW - timedelta(days=200) < row.requested_at <= NOW


def test_synth_refuses_what_it_cannot_tell() -> None:
    with pytest.raises(ValueError, match="kind must be ssh or postgres"):
        generate(10, resources=[ResourceSpec("x", "redis")])
    with pytest.raises(ValueError, match="no resources"):
        generate(10, resources=[])
