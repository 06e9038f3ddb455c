"""Policies in force: refused at start when bad; reloaded on SIGHUP and on file change; a bad
candidate is refused, logged and audited while the old set keeps serving."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc

from controlplane.policy_watch import PolicyHolder
from jitgate.v1 import access_pb2, audit_pb2, policy_pb2
from tests.cluster import NO_MODEL, REPO, ControlPlane
from tests.controlplane.api.conftest import POLICIES, refused

NEW_USER = "  zed:   {groups: [dev]}\n"
BAD_CEL = '\n  - name: broken\n    when: resource.labels.env ==\n    approval: auto\n'


def _with_user(text: str) -> str:
    return text.replace("users:\n", "users:\n" + NEW_USER, 1)


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_server_refuses_to_start_on_bad_policies(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICIES.read_text() + BAD_CEL)
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "server", "--data-dir", str(tmp_path / "data"), "--policies", str(bad),
         "--listen", "127.0.0.1:0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert re.search(rf"{re.escape(str(bad))}:\d+:\d+: ", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "server.addr").exists()


def test_sighup_reload_good_then_bad(tmp_path: Path):
    policies = tmp_path / "policies.yaml"
    shutil.copy(POLICIES, policies)
    # The file watcher is slowed right down so that only SIGHUP can cause these reloads.
    with ControlPlane(tmp_path / "cp", policies, config={**NO_MODEL, "policy_poll_seconds": 3600}) as cp:
        ada = cp.client("ada")
        v1 = ada.policy.GetPolicy(policy_pb2.GetPolicyRequest()).version
        refused(lambda: cp.client("zed").access.WhoAmI(access_pb2.WhoAmIRequest()), grpc.StatusCode.UNAUTHENTICATED)

        policies.write_text(_with_user(POLICIES.read_text()))
        cp.sighup()
        _wait(lambda: ada.policy.GetPolicy(policy_pb2.GetPolicyRequest()).version != v1)
        v2 = ada.policy.GetPolicy(policy_pb2.GetPolicyRequest()).version
        assert cp.client("zed").access.WhoAmI(access_pb2.WhoAmIRequest()).name == "zed"

        policies.write_text(_with_user(POLICIES.read_text()) + BAD_CEL)
        cp.sighup()

        def refused_event() -> list:
            return list(ada.audit.ListEvents(audit_pb2.ListEventsRequest(type="policy.refused")).events)

        _wait(lambda: bool(refused_event()))
        data = json.loads(refused_event()[0].data_json)
        assert any(re.match(rf"{re.escape(str(policies))}:\d+:\d+: ", e) for e in data["errors"]), data
        assert ada.policy.GetPolicy(policy_pb2.GetPolicyRequest()).version == v2  # the old set keeps serving
        assert cp.client("zed").access.WhoAmI(access_pb2.WhoAmIRequest()).name == "zed"
        reloaded = ada.audit.ListEvents(audit_pb2.ListEventsRequest(type="policy.reloaded")).events
        assert [e.subject for e in reloaded][-1] == v2
        assert "policy reload refused" in cp.log()


def test_file_change_reloads(tmp_path: Path):
    """The watcher PolicyHolder runs in the server, exercised here directly on real files."""
    policies = tmp_path / "policies.yaml"
    shutil.copy(POLICIES, policies)
    holder = PolicyHolder.load(policies)
    seen: list[tuple[str, bool]] = []
    holder.on_reload(lambda version, ok, errors: seen.append((version, ok)))
    v1 = holder.current.version
    holder.start_watching(0.05)
    try:
        policies.write_text(_with_user(POLICIES.read_text()))
        _wait(lambda: holder.current.version != v1)
        assert "zed" in holder.current.users
        v2 = holder.current.version
        policies.write_text(POLICIES.read_text() + BAD_CEL)
        _wait(lambda: any(not ok for _v, ok in seen))
        assert holder.current.version == v2
        assert seen[0] == (v2, True)
    finally:
        holder.stop()


def test_validate_and_dry_run(cp):
    alice, ada = cp.client("alice"), cp.client("ada")  # ada: an admin
    # Validation runs someone else's file: only admins and the `policy-authors` group may ask.
    refused(lambda: alice.policy.ValidatePolicy(policy_pb2.ValidatePolicyRequest(content=POLICIES.read_text())),
            grpc.StatusCode.PERMISSION_DENIED)
    ok = ada.policy.ValidatePolicy(policy_pb2.ValidatePolicyRequest(content=POLICIES.read_text(),
                                                                    filename="candidate.yaml"))
    assert ok.ok and ok.version.startswith("sha256:")
    bad = ada.policy.ValidatePolicy(policy_pb2.ValidatePolicyRequest(
        content=POLICIES.read_text() + BAD_CEL, filename="candidate.yaml"))
    assert not bad.ok and bad.problems[0].file == "candidate.yaml" and bad.problems[0].line > 0
    decision = alice.policy.DryRun(policy_pb2.DryRunRequest(request_json=json.dumps(
        {"user": "cora", "resource": "orders-db", "role": "readonly", "duration": "30m", "reason": "r"})))
    assert decision.effect == "deny" and decision.rules == ["no-contractors-in-prod"]
    refused(lambda: alice.policy.DryRun(policy_pb2.DryRunRequest(request_json="{")),
            grpc.StatusCode.INVALID_ARGUMENT)


