from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recommend.history import HistoryRow
from recommend.model import MODEL_FILE, load_model
from recommend.serve import Recommendation, Recommender, RecommendRequest

STEP = timedelta(minutes=15)
LATER = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)  # after every synthetic grant


def _request(row: HistoryRow, **changes: object) -> RecommendRequest:
    fields = dict(user=row.user, resource=row.resource, kind=row.kind, labels=dict(row.labels), login=row.login,
                  role=row.role, reason=row.reason, ticket=row.ticket, requested_at=LATER)
    fields.update(changes)
    return RecommendRequest(**fields)  # type: ignore[arg-type]


def _busy_pair(rows: list[HistoryRow]) -> HistoryRow:
    """The last grant of the person with the most grants on one resource."""
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r.user, r.resource)] = counts.get((r.user, r.resource), 0) + 1
    user, resource = max(counts, key=counts.__getitem__)
    return [r for r in rows if r.user == user and r.resource == resource][-1]


def test_model_answer_with_explanation(rows: list[HistoryRow], trained_dir: Path) -> None:
    recommender = Recommender(trained_dir)
    assert recommender.load_error is None and recommender.model_version == load_model(trained_dir).metadata.version
    row = _busy_pair(rows)
    result = recommender.recommend(_request(row), timedelta(hours=8), STEP, rows)
    assert not result.fallback and result.basis == "model" and result.model_version == recommender.model_version
    assert result.duration % STEP == timedelta(0) and result.duration >= STEP
    assert result.minutes * 60 == result.duration.total_seconds()
    assert "similar" in result.explanation and f"your last 5 on {row.resource} used" in result.explanation


def test_clamped_to_the_policy_maximum_and_says_so(rows: list[HistoryRow], trained_dir: Path) -> None:
    recommender = Recommender(trained_dir)
    row = _busy_pair(rows)
    free = recommender.recommend(_request(row), None, STEP, rows)
    assert free.duration > STEP
    tight = free.duration - STEP  # rounding up chose `free`, so the prediction is above `tight`
    capped = recommender.recommend(_request(row), tight, STEP, rows)
    assert capped.duration == tight and capped.minutes == int(tight.total_seconds() // 60)
    assert "capped at the policy maximum" in capped.explanation
    assert "capped" not in free.explanation


def test_coarser_step_rounds_up(rows: list[HistoryRow], trained_dir: Path) -> None:
    recommender = Recommender(trained_dir)
    row = _busy_pair(rows)
    fine = recommender.recommend(_request(row), None, timedelta(minutes=1), rows)
    hour = recommender.recommend(_request(row), None, timedelta(hours=1), rows)
    assert hour.duration % timedelta(hours=1) == timedelta(0)
    assert fine.duration <= hour.duration < fine.duration + timedelta(hours=1)


def test_fallback_without_model_uses_resource_then_kind_statistics(rows: list[HistoryRow], tmp_path: Path) -> None:
    recommender = Recommender(tmp_path / "no-model")
    assert recommender.load_error and "no trained model" in recommender.load_error
    row = _busy_pair(rows)
    on_resource = recommender.recommend(_request(row), timedelta(hours=8), STEP, rows)
    assert on_resource.fallback and on_resource.basis == "resource" and on_resource.model_version is None
    assert on_resource.explanation.startswith("fallback (no trained model): 80% of ")
    assert f"past grants on {row.resource} used at most" in on_resource.explanation
    used = sorted(r.used_minutes for r in rows if r.resource == row.resource)
    assert on_resource.duration.total_seconds() / 60 >= used[int(len(used) * 0.8) - 1]

    new_db = _request(
        row, resource="brand-new-db", kind="postgres", labels={"env": "prod"}, login=None, role="readonly"
    )
    by_kind = recommender.recommend(new_db, timedelta(hours=8), STEP, rows)
    assert by_kind.fallback and by_kind.basis == "kind" and "on prod databases" in by_kind.explanation

    nothing = recommender.recommend(new_db, timedelta(minutes=45), STEP, [])
    assert nothing.basis == "default" and nothing.duration == timedelta(minutes=45)
    assert "no usable history" in nothing.explanation and "capped at the policy maximum" in nothing.explanation


def test_unknown_resource_falls_back_even_with_a_model(rows: list[HistoryRow], trained_dir: Path) -> None:
    recommender = Recommender(trained_dir)
    row = _busy_pair(rows)
    result = recommender.recommend(_request(row, resource="brand-new-host"), None, STEP, rows)
    assert result.fallback and result.model_version == recommender.model_version
    assert "the model knows too little of brand-new-host" in result.explanation


def test_corrupt_model_file_falls_back_and_reload_recovers(rows: list[HistoryRow], trained_dir: Path,
                                                          tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained_dir, copy)
    good = (copy / MODEL_FILE).read_text()
    (copy / MODEL_FILE).write_text(good[: len(good) // 2])
    recommender = Recommender(copy)
    assert recommender.load_error and "corrupt" in recommender.load_error and recommender.model_version is None
    row = _busy_pair(rows)
    result = recommender.recommend(_request(row), timedelta(hours=2), STEP, rows)
    assert result.fallback and result.explanation.startswith("fallback (no trained model)")
    (copy / MODEL_FILE).write_text(good)
    assert recommender.reload() and recommender.load_error is None
    assert not recommender.recommend(_request(row), timedelta(hours=2), STEP, rows).fallback
    version = recommender.model_version
    (copy / MODEL_FILE).unlink()
    assert not recommender.reload() and "missing" in (recommender.load_error or "")
    assert recommender.model_version == version, "a broken file on disk dropped the model already in memory"
    assert not recommender.recommend(_request(row), timedelta(hours=2), STEP, rows).fallback


def test_only_finished_past_is_used(rows: list[HistoryRow], trained_dir: Path) -> None:
    recommender = Recommender(trained_dir)
    row = _busy_pair(rows)
    early = _request(row, requested_at=rows[0].requested_at)
    result = recommender.recommend(early, None, STEP, rows)
    assert f"no finished grants on {row.resource} yet" in result.explanation or "elsewhere" in result.explanation


def test_same_answers_from_many_threads(rows: list[HistoryRow], trained_dir: Path) -> None:
    recommender = Recommender(trained_dir)
    asks = [_request(r) for r in rows[-40:]]
    expected = [recommender.recommend(a, timedelta(hours=4), STEP, rows[-500:]) for a in asks]
    results: list[list[Recommendation]] = [[] for _ in range(6)]

    def work(slot: int) -> None:
        for a in asks:
            results[slot].append(recommender.recommend(a, timedelta(hours=4), STEP, rows[-500:]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)


@pytest.mark.parametrize("fields, message", [
    (dict(user="", resource="x", kind="ssh"), "needs `user`"),
    (dict(user="a", resource="x", kind="ssh", login="root", role="readonly"), "not both"),
    (dict(user="a", resource="x", kind="ssh", requested_at=datetime(2026, 1, 1)), "time zone"),
])
def test_bad_requests_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecommendRequest(**fields)


def test_a_failing_booster_falls_back_instead_of_failing_the_request(rows: list[HistoryRow], trained_dir: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    recommender = Recommender(trained_dir)
    loaded = recommender._loaded
    assert loaded is not None

    def fake_broken_predict(*args: object, **kwargs: object) -> None:  # a fake: LightGBM cannot be made to fail here
        raise RuntimeError("booster exploded")

    monkeypatch.setattr(loaded.bundle.booster, "predict", fake_broken_predict)
    result = recommender.recommend(_request(_busy_pair(rows)), timedelta(hours=2), STEP, rows)
    assert result.fallback and result.explanation.startswith("fallback (the model failed)")
