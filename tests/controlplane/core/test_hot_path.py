"""The request hot path does only the work whose result is used, and stays exact while doing so."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.controlplane.core.helpers import dev


class CountingRecommender:
    """The real `recommend.Recommender`, counting the calls the core makes to it."""

    def __init__(self) -> None:
        from recommend import Recommender

        self.inner = Recommender(None)
        self.calls = 0

    def recommend(self, *args, **kwargs):
        self.calls += 1
        return self.inner.recommend(*args, **kwargs)


@pytest.fixture
def counting() -> CountingRecommender:
    return CountingRecommender()


def test_no_recommendation_when_a_duration_is_given(make_core, counting):
    core = make_core(recommender=counting)
    rec, recommendation = core.requests.create_request(
        "alice", "dev-db", role="readonly", duration=timedelta(minutes=30), reason="report"
    )
    assert rec.state == "ACTIVE" and rec.duration == timedelta(minutes=30)
    assert recommendation is None and counting.calls == 0


def test_dry_run_and_no_duration_still_recommend(make_core, counting):
    core = make_core(recommender=counting)
    dry, recommendation = core.requests.create_request(
        "alice", "dev-db", role="readonly", duration=timedelta(minutes=30), reason="report", dry_run=True
    )
    assert dry.id == "" and dry.duration == timedelta(minutes=30)
    assert recommendation is not None and recommendation.max_duration == timedelta(hours=8)
    assert counting.calls == 1
    rec, recommendation = core.requests.create_request(
        "alice", "dev-db", role="readonly", duration=None, reason="report"
    )
    assert recommendation is not None and rec.duration == recommendation.duration and counting.calls == 2
    with core.ledger.store.read() as tx:
        assert tx.get_request(dry.id) is None and tx.get_request(rec.id) is not None


def test_one_policy_decision_per_request_with_a_duration(make_core, policy_set, counting):
    calls = []

    class CountingPolicy:
        """The real policy set, counting decisions."""

        @property
        def current(self):
            return self

        def __getattr__(self, name):
            return getattr(policy_set, name)

        def decide(self, req):
            calls.append(req.duration)
            return policy_set.decide(req)

    core = make_core(policy=CountingPolicy(), recommender=counting)
    dev(core, minutes=45)
    assert calls == [timedelta(minutes=45)]


# -- history counters (schema v5: per-day counters kept by triggers) ---------------------------


def _every_since(core, users, start, end):
    """history_counts against counting every row, for each user and many window starts:
    day boundaries, the instants requests were created at, and between them."""
    from controlplane.store import from_us, to_us

    with core.ledger.store.read() as tx:
        created = [from_us(us) for (us,) in tx.conn.exec_driver_sql("SELECT created_us FROM requests")]
        points = set(created) | {c + timedelta(microseconds=1) for c in created}
        day = start.replace(hour=0, minute=0)
        while day <= end + timedelta(days=1):
            points |= {day, day - timedelta(microseconds=1), day + timedelta(hours=13)}
            day += timedelta(days=1)
        checked = 0
        for user in users:
            for since in sorted(points):
                assert tx.history_counts(user, since) == tx.history_counts_scan(user, since), (user, since)
                checked += 1
        assert to_us(start) is not None
    return checked


def test_history_counters_equal_counting_every_row(core, clock):
    from tests.controlplane.core.helpers import prod

    start = clock.now
    ids = {}
    for day in range(6):
        for user in ("alice", "mia"):
            ids[(day, user, "dev")] = dev(core, user=user, minutes=30).id  # granted
            ids[(day, user, "over")] = prod(core, user=user, minutes=600).id  # denied (over the maximum)
            ids[(day, user, "pending")] = prod(core, user=user).id  # pending, approved later or not
            bg, _ = core.requests.create_request(
                user, "web-prod-01", login="deploy", duration=timedelta(minutes=30), reason="outage", emergency=True
            )
            ids[(day, user, "bg")] = bg.id
            clock.advance(hours=7)
        clock.advance(hours=10)
    # later changes to rows of earlier days move those days' counters
    core.grants.revoke("ada", ids[(1, "alice", "dev")], "suspicious")
    core.grants.revoke("mia", ids[(3, "mia", "dev")])
    core.approvals.review("sam", ids[(2, "alice", "bg")], True, "wrong host")
    core.approvals.review("sam", ids[(4, "alice", "bg")], False, "fine")
    core.approvals.approve("bob", ids[(5, "alice", "pending")])
    core.approvals.approve("sam", ids[(5, "alice", "pending")])
    core.approvals.deny("bob", ids[(0, "mia", "pending")])
    core.requests.cancel("alice", ids[(1, "alice", "pending")])
    clock.advance(days=1)
    core.grants.sweep()  # expiries and pending timeouts change no counter, and must not break one
    with core.ledger.store.read() as tx:
        assert tx.history_counts("alice", start)["revoked_90d"] == 1
        assert tx.history_counts("alice", start)["flagged_90d"] == 1
        assert tx.history_counts("mia", start)["denied_90d"] == 6 + 1
        assert tx.history_counts("nobody", start) == {
            "granted_90d": 0,
            "denied_90d": 0,
            "revoked_90d": 0,
            "flagged_90d": 0,
        }
    assert _every_since(core, ("alice", "mia", "nobody"), start, clock.now) > 100


def test_history_counters_are_backfilled_by_the_migration(tmp_path, make_core, clock):
    """A database from before v5 (requests, no counters) gets exact counters when opened."""
    import sqlite3

    core = make_core()
    start = clock.now
    for _ in range(5):
        dev(core, minutes=30)
        clock.advance(hours=9)
    core.grants.revoke("ada", dev(core).id, "x")
    with sqlite3.connect(core.ledger.store.engine.url.database) as conn:  # back to v4: no counters, no triggers
        for name in ("history_days_insert", "history_days_update", "history_days_delete"):
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE history_days")
        conn.execute("DELETE FROM schema_version WHERE version >= 5")
        conn.execute("DROP TABLE alembic_version")  # as the jitgate from before Alembic left it
    core.ledger.store.close()
    again = make_core()
    with again.ledger.store.read() as tx:
        assert tx.history_counts("alice", start) == {
            "granted_90d": 6,
            "denied_90d": 0,
            "revoked_90d": 1,
            "flagged_90d": 0,
        }
    assert _every_since(again, ("alice",), start, clock.now) > 20


# -- WAL checkpoints off the request path ---------------------------------------------------


def test_commits_never_checkpoint_and_the_checkpointer_thread_does(core, db_path):
    import time

    with core.ledger.store.read() as tx:
        assert tx.cur.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert tx.cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cp = core.ledger.store.checkpointer
    size = db_path.stat().st_size
    for _ in range(50):
        dev(core)
    rounds = cp.checkpoints
    deadline = time.monotonic() + 10
    while cp.checkpoints < rounds + 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting on another thread's periodic work (no event to await)
    assert cp.checkpoints >= rounds + 2
    assert db_path.stat().st_size > size  # the pages moved from the WAL into the database file


def test_a_closed_store_leaves_everything_in_the_database_file(make_core, db_path):
    import sqlite3

    core = make_core()
    ids = [dev(core).id for _ in range(20)]
    core.ledger.store.close()
    assert (
        not db_path.with_name(db_path.name + "-wal").exists()
        or db_path.with_name(db_path.name + "-wal").stat().st_size == 0
    )
    with sqlite3.connect(f"file:{db_path}?mode=ro&immutable=1", uri=True) as conn:  # reads the file only
        found = {i for (i,) in conn.execute("SELECT id FROM requests")}
    assert set(ids) <= found


# -- transactions on pooled DBAPI connections ------------------------------------------------


def test_a_transaction_is_one_whether_statements_are_prebuilt_or_not(core):
    """Prebuilt statements (the cursor) and SQLAlchemy ones (`tx.conn`, made on first use) run
    in one transaction: each sees the other's uncommitted rows, and a failure undoes both."""
    from sqlalchemy import text

    rec = dev(core)
    with pytest.raises(RuntimeError):
        with core.ledger.store.write() as tx:
            tx.cur.execute("UPDATE requests SET reason = 'changed' WHERE id = ?", (rec.id,))
            assert (
                tx.conn.execute(text("SELECT reason FROM requests WHERE id = :i"), {"i": rec.id}).scalar() == "changed"
            )
            tx.conn.execute(text("UPDATE requests SET message = 'm' WHERE id = :i"), {"i": rec.id})
            assert tx.get_request(rec.id).message == "m"
            raise RuntimeError("undo")
    again = core.requests.get_request("alice", rec.id)
    assert again.reason == rec.reason and again.message == rec.message
    with core.ledger.store.write() as tx:
        tx.conn.execute(text("UPDATE requests SET message = 'kept' WHERE id = :i"), {"i": rec.id})
        tx.cur.execute("UPDATE requests SET reason = 'kept too' WHERE id = ?", (rec.id,))
    kept = core.requests.get_request("alice", rec.id)
    assert (kept.message, kept.reason) == ("kept", "kept too")
    with core.ledger.store.read() as tx:  # a read sees committed data only, through either path
        assert tx.conn.execute(text("SELECT count(*) FROM requests")).scalar() == 1
        assert tx.get_request(rec.id).message == "kept"
