from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from recommend.features import FEATURES, ask_of, features_for, in_time_order, past_features
from recommend.history import HistoryRow
from recommend.text import TEXT_FEATURES

T0 = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
COL = {name: i for i, name in enumerate(FEATURES)}


def _row(minutes_after: float, used: float, user: str = "alice", resource: str = "orders-db",
         reason: str = "monthly report") -> HistoryRow:
    return HistoryRow(user=user, resource=resource, kind="postgres", labels={"env": "prod"}, role="readonly",
                      reason=reason, requested_at=T0 + timedelta(minutes=minutes_after),
                      asked_minutes=60, used_minutes=used)


def test_only_grants_finished_before_the_request_count() -> None:
    first = _row(0, 120)          # runs until 12:00
    second = _row(60, 30)         # asked at 11:00, while the first is still open
    third = _row(180, 40)         # asked at 13:00: both earlier grants have finished
    feats, _ = past_features([first, second, third])
    assert feats[0][COL["u_res_n"]] == 0 and math.isnan(feats[0][COL["u_res_med"]])
    assert feats[1][COL["u_res_n"]] == 0, "an unfinished grant leaked into a later row"
    assert feats[2][COL["u_res_n"]] == 2
    assert feats[2][COL["u_res_med"]] == 75.0
    assert feats[2][COL["u_res_last"]] == 120.0  # the first finished last (12:00 after 11:30)


def test_features_do_not_change_when_the_future_changes(rows: list[HistoryRow]) -> None:
    ordered = in_time_order(rows[:600])
    before, _ = past_features(ordered)
    cut = 400
    changed = ordered[:cut] + [replace(r, used_minutes=r.used_minutes * 3 + 7) for r in ordered[cut:]]
    after, _ = past_features(changed)
    for i in range(cut + 1):
        assert _same(before[i], after[i]), f"row {i} saw the future"


# Grouped by the kind of work as known when each past grant was asked (training) or now (serving).
# The pace features read what the words predicted of each past grant: when it was asked (training)
# or now (serving).
_BY_WORK = {COL["u_res_task_med"], COL["u_task_med"], COL["u_task_ask"], COL["u_ask_need"], COL["u_pace"]}


def test_serving_features_equal_training_features(rows: list[HistoryRow]) -> None:
    ordered = in_time_order(rows[:800])
    freeze = 500
    trained, words = past_features(ordered, freeze_words_at=freeze)
    for i in range(0, len(ordered), 7):
        ask = ask_of(ordered[i])
        served = features_for(ask, list(reversed(ordered)), words)  # the order a caller passes rows in does not matter
        if i >= freeze:  # the same frozen words: the same text features and kind of work
            assert _same(
                trained[i][len(FEATURES) - len(TEXT_FEATURES) :], served.raw[len(FEATURES) - len(TEXT_FEATURES) :]
            )
            assert trained[i][COL["work"]] == served.raw[COL["work"]]
        keep = [j for j in range(len(FEATURES) - len(TEXT_FEATURES)) if j not in _BY_WORK and j != COL["work"]]
        assert _same(tuple(trained[i][j] for j in keep), tuple(served.raw[j] for j in keep)), \
            f"row {i}: serving features differ from training"
        known = sorted((r for r in ordered if r.user == ask.user and r.resource == ask.resource
                        and r.finished_at <= ask.at), key=lambda r: (r.finished_at, r.requested_at))
        assert served.recent_on_resource == [r.used_minutes for r in known][-10:]


def _same(a: tuple, b: tuple) -> bool:
    return all((isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)) or x == y
               for x, y in zip(a, b, strict=True))
