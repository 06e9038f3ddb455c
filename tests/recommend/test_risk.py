"""Issue 19 part 2: risk scores with reasons, `risk` in CEL, and unknown scores that say why."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from policy import PolicyRequest, load_policy_text
from recommend.errors import ModelError
from recommend.features import in_time_order
from recommend.risk import (
    MAX_SAMPLES,
    N_TREES,
    RISK_FEATURES,
    RISK_FILE,
    ask_of_row,
    fit_risk,
    history_features,
    load_risk,
    past_of,
    rarity_matrix,
    risk_features,
    save_risk,
    score_request,
)
from recommend.serve import Recommender
from recommend.synth import generate

POLICY = """
version: 1
users:
  alice: {groups: [sre]}
  sam: {groups: [security]}
resources:
  db:
    kind: postgres
    address: 127.0.0.1:5432
    roles: [readonly]
rules:
  - name: sre-auto
    when: '"sre" in user.groups'
    approval: auto
  - name: risky-needs-security
    when: '!risk.known || risk.score > 0.8'
    effect: require
    approval: {levels: [{approvers: [group:security]}]}
tests:
  - name: a low known score stays automatic
    request: {user: alice, resource: db, role: readonly, duration: 30m, reason: x, time: "2026-11-18T10:00:00Z",
              risk: {known: true, score: 0.1, reasons: []}}
    expect: {effect: allow, approval: auto}
  - name: a high score adds security
    request: {user: alice, resource: db, role: readonly, duration: 30m, reason: x, time: "2026-11-18T10:00:00Z",
              risk: {known: true, score: 0.95, reasons: [hour unusual for this user]}}
    expect: {effect: allow, approval: {levels: [{approvers: ["group:security"], min: 1}]}}
"""


@pytest.fixture(scope="module")
def history() -> list:
    return in_time_order(generate(1500, seed=8))


@pytest.fixture(scope="module")
def model(history: list):
    cut = 1200
    features, pattern = history_features(history[:cut])
    return fit_risk(features, pattern)


def _decide(risk: dict | None) -> dict:
    ps = load_policy_text(POLICY, "risk.yaml")
    req: dict[str, object] = {"user": "alice", "resource": "db", "role": "readonly", "duration": "30m", "reason": "x",
           "time": "2026-11-18T10:00:00Z"}
    if risk is not None:
        req["risk"] = risk
    return ps.decide(PolicyRequest.from_mapping(req)).to_json()


def test_risk_in_cel_fails_closed_when_unknown_and_decisions_record_it() -> None:
    low = _decide({"known": True, "score": 0.1, "reasons": []})
    assert low["approval"]["mode"] == "auto" and low["risk"] == {"known": True, "score": 0.1, "reasons": []}
    high = _decide({"known": True, "score": 0.93, "reasons": ["burst of requests"]})
    assert high["approval"]["levels"] == [{"approvers": ["group:security"], "min": 1}]
    assert high["risk"]["reasons"] == ["burst of requests"]
    unknown = _decide({"known": False, "reasons": ["no risk model: not trained"]})
    assert unknown["approval"]["levels"], "an unknown score must take the fail-closed branch"
    assert unknown["risk"] == {"known": False, "score": 0.0, "reasons": ["no risk model: not trained"]}
    assert _decide(None)["approval"]["levels"] and "risk" not in _decide(None)  # no scorer: risk.known is false


def test_bad_risk_in_a_request_is_refused_plainly() -> None:
    from policy.errors import RequestError

    for bad, words in (({"known": True, "score": 2}, "`risk.score` must be a number from 0 to 1"),
                       ({"known": "yes"}, "`risk.known` must be true or false"),
                       ({"known": True, "reasons": ["x"] * 17}, "at most 16 strings"),
                       ({"known": True, "colour": 1}, "`risk` must be a mapping")):
        with pytest.raises(RequestError, match=words.replace("(", r"\(")):
            PolicyRequest.from_mapping({"user": "a", "resource": "b", "duration": "1h",
                                        "time": "2026-11-18T10:00:00Z", "risk": bad})


def test_scores_flag_injected_anomalies_with_reasons(history: list, model) -> None:
    normal = [model.score(ask_of_row(r), [past_of(p) for p in history[:i] if p.user == r.user],
                          [past_of(p) for p in history[:i] if p.resource == r.resource]).score
              for i, r in enumerate(history[1200:1300], start=1200)]
    row = next(r for r in history[1300:] if sum(p.user == r.user for p in history[:1300]) > 30)
    past = history[:1300]
    users = {r.user for r in past}
    unseen = next(res for res in sorted({r.resource for r in history}) if not any(
        p.user == row.user and p.resource == res for p in past))
    odd = ask_of_row(row, at=row.requested_at.replace(hour=(row.requested_at.hour + 12) % 24), resource=unseen,
                     asked_minutes=row.asked_minutes * 12, emergency=True, reason="quick look")
    got = score_request(model, None, odd, [p for p in past if p.user == row.user],
                        [p for p in past if p.resource == unseen])
    assert got.known and got.score > np.percentile(normal, 95), (got, sorted(normal)[-5:])
    assert "duration far above the recommendation" in got.reasons and len(got.reasons) <= 3
    assert users  # the history had people to compare with


def test_missing_or_broken_model_gives_unknown_with_why(model, history: list, tmp_path: Path) -> None:
    ask = ask_of_row(history[-1])
    missing = Recommender(tmp_path / "none", check_every=None).risk(ask, history, history)
    assert not missing.known and missing.score == 0.0 and "no risk model" in missing.reasons[0]
    save_risk(tmp_path, model)
    assert load_risk(tmp_path).anomaly(history_features(history[:50])[0][-1]) == pytest.approx(
        model.anomaly(history_features(history[:50])[0][-1]))
    data = json.loads((tmp_path / RISK_FILE).read_text())
    data["body"]["threshold"][0] += 1.0  # an edit the checksum catches
    (tmp_path / RISK_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="checksum"):
        load_risk(tmp_path)
    broken = Recommender(tmp_path, check_every=None).risk(ask, history, history)
    assert not broken.known and "corrupt risk model" in broken.reasons[0]
    model_fails = score_request(type("Broken", (), {"score": lambda *a: 1 / 0})(), None, ask, history, history)
    assert not model_fails.known and "failed" in model_fails.reasons[0]


def test_the_tree_walk_equals_scikit_learn(history: list, model) -> None:
    from sklearn.ensemble import IsolationForest

    x, _ = history_features(history)
    r = rarity_matrix(x, model.grid)
    forest = IsolationForest(n_estimators=N_TREES, max_samples=min(MAX_SAMPLES, 1200), random_state=42,
                             n_jobs=1).fit(r[:1200])
    ours = np.array([model.anomaly(v) for v in x[1200:1260]])
    assert np.allclose(ours, -forest.score_samples(r[1200:1260]), atol=1e-9)
    assert timedelta(0) < history[-1].requested_at - history[0].requested_at


def _core(tmp_path: Path, recommender):
    from controlplane.core import AccessCore, StaticPolicy
    from controlplane.store import open_store

    return AccessCore(open_store(str(tmp_path / "store.db")), StaticPolicy(load_policy_text(POLICY, "risk.yaml")),
                      recommender=recommender)


def test_the_control_plane_records_risk_in_decision_audit_and_requests_show(model, tmp_path: Path) -> None:
    """A scored request: the score reaches CEL, the decision, its audit event, the Decision message
    and `requests show`; without a risk model the score is unknown, the decision says why, and the
    fail-closed rule adds security."""
    from cli.render import risk_text
    from controlplane import convert

    save_risk(tmp_path / "model", model)
    core = _core(tmp_path, Recommender(tmp_path / "model", check_every=None))
    try:
        rec, _ = core.requests.create_request(
            "alice", "db", role="readonly", duration=timedelta(minutes=30), reason="report")
        risk = rec.decision.risk
        assert risk["known"] and 0.0 <= risk["score"] <= 1.0 and isinstance(risk["reasons"], list)
        created = core.audit.audit_events(type="request.created")[-1]
        assert created.data["decision"]["risk"] == risk
        message = convert.decision(rec.decision)
        assert message is not None and message.risk.known and abs(message.risk.score - risk["score"]) < 1e-9
        assert risk_text(message).startswith(f"{risk['score']:.2f}")
    finally:
        core.ledger.store.close()
    (tmp_path / "model" / RISK_FILE).unlink()
    (tmp_path / "none").mkdir()
    core = _core(tmp_path / "none", Recommender(tmp_path / "model", check_every=None))
    try:
        rec, _ = core.requests.create_request(
            "alice", "db", role="readonly", duration=timedelta(minutes=30), reason="report"
        )
        assert rec.decision.risk["known"] is False and "no risk model" in rec.decision.risk["reasons"][0]
        assert rec.decision.approval.levels, "an unknown score takes the policy's fail-closed branch"
        assert risk_text(convert.decision(rec.decision)).startswith("unknown (no risk model")
    finally:
        core.ledger.store.close()


def test_new_to_the_group_counts_only_the_requesters_peers(history: list) -> None:
    """A resource new to the requester that only people outside their group used is new to their
    peers; with peers unnamed (None) everyone counts."""
    col = list(RISK_FEATURES).index("resource_new_peers")
    row = next(r for r in history[1000:] if sum(p.user == r.user for p in history[:1000]) > 10)
    mine = [p for p in history[:1000] if p.user == row.user]
    other = next(res for res in sorted({r.resource for r in history[:1000]})
                 if not any(p.resource == res for p in mine) and any(p.resource == res for p in history[:1000]))
    on_resource = [p for p in history[:1000] if p.resource == other]
    users_there = {p.user for p in on_resource}
    ask = ask_of_row(row, resource=other)
    everyone = risk_features(ask, mine, on_resource, None)[col]
    outsiders = risk_features(replace(ask, peers=frozenset({"nobody-here"})), mine, on_resource, None)[col]
    insiders = risk_features(replace(ask, peers=frozenset(users_there)), mine, on_resource, None)[col]
    assert everyone == pytest.approx(1 / (1 + len(users_there))) and insiders == everyone
    assert outsiders == 1.0 > everyone  # nobody of the group used it: fully new to the peers
    # Training reads peers as serving will, when the caller names them (train_risk(peers_of=...)).
    alone, _ = history_features(history[:300], peers_of=lambda user: frozenset())
    crowd, _ = history_features(history[:300])
    new = alone[:, col] > 0
    assert new.any() and (alone[new, col] == 1.0).all() and (crowd[new, col] < 1.0).any()


PEERS_POLICY = POLICY.replace("  sam: {groups: [security]}", "  sam: {groups: [security]}\n  bob: {groups: [sre]}\n"
                              "  carol: {groups: [sre, dba]}\n  dan: {groups: [dba]}\n  eve: {}")


def test_the_control_plane_names_the_requesters_group_as_peers(tmp_path: Path) -> None:
    from controlplane.core import AccessCore, StaticPolicy
    from controlplane.store import open_store

    core = AccessCore(open_store(str(tmp_path / "store.db")),
                      StaticPolicy(load_policy_text(PEERS_POLICY, "risk.yaml")), recommender=None)
    try:
        assert core.history.peers_of("alice") == frozenset({"bob", "carol"})
        assert core.history.peers_of("carol") == frozenset({"alice", "bob", "dan"})  # both of her groups
        assert core.history.peers_of("eve") is None  # in no group: everyone is a peer
    finally:
        core.ledger.store.close()


def test_extensions_are_risk_scored_and_recorded(model, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An extension is scored as the whole grant it would make: a long one scores higher than a short
    one, and the score is in the extension's decision and its audit event (and in a refusal's)."""
    save_risk(tmp_path / "model", model)
    core = _core(tmp_path, Recommender(tmp_path / "model", check_every=None))
    try:
        scores = []
        for minutes in (5, 300):
            rec, _ = core.requests.create_request(
                "alice", "db", role="readonly", duration=timedelta(minutes=30), reason="report")
            if rec.state == "PENDING":  # alice has no past: her request may score high and need security
                rec = core.approvals.approve("sam", rec.id)
            rec = core.grants.extend("alice", rec.id, timedelta(minutes=minutes), "more")
            risk = rec.extensions[-1].decision.risk
            assert risk is not None and risk["known"], risk
            event = core.audit.audit_events(type="extension.requested")[-1]
            assert event.data["decision"]["risk"] == risk
            scores.append(risk["score"])
        assert scores[1] > scores[0], scores
        assert "duration far above the recommendation" in rec.extensions[-1].decision.risk["reasons"]
        from cli.render import print_request
        from controlplane import convert

        print_request(convert.access_request(rec))  # what `requests show` prints to an approver
        shown = capsys.readouterr().out
        assert f"risk: {risk['score']:.2f}: " in shown and "duration far above the recommendation" in shown
    finally:
        core.ledger.store.close()
