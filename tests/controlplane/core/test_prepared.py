"""Expired records built ahead of the deadline (controlplane/prepared.py) and the sweep that uses them."""
from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane import grants as grants_module
from controlplane.model import ApprovalRecord
from tests.controlplane.core.helpers import START, dev


@pytest.mark.parametrize("chunk", [grants_module.SWEEP_CHUNK, 4])
def test_a_mass_expiry_publishes_every_grant_in_order_as_stored_prepared_or_not(core, clock, monkeypatch, chunk):
    """Grants ending at one instant: every one published once, in seq order with no gap, each with
    its request exactly as a read after the commit gives it; a prepared record is used only when
    nothing about the request changed since it was built (here: one row edited, one approval
    added, one grant revoked, one extended, one created after preparing). Also when the sweep
    ends them in several transactions (`chunk` per transaction)."""
    monkeypatch.setattr(grants_module, "SWEEP_CHUNK", chunk)
    grants = [dev(core, user=u, minutes=10) for u in ("alice", "bob") * 15]
    assert core.grants.prepared.prepare(START + timedelta(minutes=10)) == 30
    core.grants.revoke("ada", grants[0].id)
    core.grants.extend("alice", grants[2].id, timedelta(minutes=30), "more")  # auto-approved: due later
    edited, approved = grants[4], grants[5]
    with core.ledger.write() as w:
        rec = w.tx.get_request(edited.id)
        rec.message = "edited after preparing"
        w.tx.update_request(rec)
        w.tx.add_approval(approved.id, "", ApprovalRecord("sam", 0, True, "late", START))
        w.commit([])
    late = dev(core, user="bob", minutes=10)
    expired = []
    core.ledger.subscribe(lambda ch: expired.append(ch) if ch.type == "grant.expired" else None)

    clock.advance(minutes=10)
    core.grants.sweep()

    due = {g.id for g in grants} - {grants[0].id, grants[2].id} | {late.id}
    assert {ch.request.id for ch in expired} == due and len(expired) == len(due)
    seqs = [ch.seq for ch in expired]
    assert seqs == list(range(seqs[0], seqs[0] + len(due)))
    with core.ledger.store.read() as tx:
        fresh = {rec.id: rec for rec in tx.get_requests(sorted(due))}
    for ch in expired:
        assert ch.request == fresh[ch.request.id] and ch.request.state == "EXPIRED"
    by_id = {ch.request.id: ch.request for ch in expired}
    assert by_id[edited.id].message == "edited after preparing"
    assert [a.comment for a in by_id[approved.id].approvals] == ["late"]
    assert core.grants.prepared.hits == len(due) - 3  # not: edited, approved, created late
    # Each handed out (or dropped) once; the revoked and the extended one wait for the next prepare.
    assert len(core.grants.prepared) == 2


def test_a_grant_with_a_pending_extension_is_not_prepared(core, clock):
    """The sweep cancels a pending extension at a time not known ahead: such a grant is built
    when it ends, with its extension CANCELLED."""
    from tests.controlplane.core.helpers import prod

    rec = prod(core, minutes=10)
    for approver in ("bob", "sam"):
        core.approvals.approve(approver, rec.id, "ok")
    core.grants.extend("alice", rec.id, timedelta(minutes=30), "more")  # waits for its approvers
    plain = dev(core, minutes=10)
    assert core.grants.prepared.prepare(START + timedelta(minutes=10)) == 1
    expired = []
    core.ledger.subscribe(lambda ch: expired.append(ch.request) if ch.type == "grant.expired" else None)
    clock.advance(minutes=10)
    core.grants.sweep()
    by_id = {r.id: r for r in expired}
    assert set(by_id) == {rec.id, plain.id}
    assert [e.state for e in by_id[rec.id].extensions] == ["CANCELLED"]
    assert core.grants.prepared.hits == 1
