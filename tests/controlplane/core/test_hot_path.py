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
    rec, recommendation = core.create_request("alice", "dev-db", role="readonly", duration=timedelta(minutes=30),
                                              reason="report")
    assert rec.state == "ACTIVE" and rec.duration == timedelta(minutes=30)
    assert recommendation is None and counting.calls == 0


def test_dry_run_and_no_duration_still_recommend(make_core, counting):
    core = make_core(recommender=counting)
    dry, recommendation = core.create_request("alice", "dev-db", role="readonly", duration=timedelta(minutes=30),
                                              reason="report", dry_run=True)
    assert dry.id == "" and dry.duration == timedelta(minutes=30)
    assert recommendation is not None and recommendation.max_duration == timedelta(hours=8)
    assert counting.calls == 1
    rec, recommendation = core.create_request("alice", "dev-db", role="readonly", duration=None, reason="report")
    assert recommendation is not None and rec.duration == recommendation.duration and counting.calls == 2
    with core.store.read() as tx:
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
