from __future__ import annotations

import itertools
import json
import statistics
from collections import defaultdict

import pytest

from recommend.features import task_of
from recommend.history import HistoryRow, row_from_json
from recommend.synth import generate
from recommend.tasks import TASKS, classify_task


def test_same_seed_same_history_other_seed_differs() -> None:
    first = [json.dumps(r.to_json()) for r in generate(400, seed=5)]
    assert first == [json.dumps(r.to_json()) for r in generate(400, seed=5)]
    assert first != [json.dumps(r.to_json()) for r in generate(400, seed=6)]


def test_rows_are_valid_history_in_time_order(rows: list[HistoryRow]) -> None:
    assert [row_from_json(r.to_json()) for r in rows[:300]] == rows[:300]
    assert all(a.requested_at <= b.requested_at for a, b in itertools.pairwise(rows))
    assert {task_of(r.reason, r.ticket) for r in rows} == set(TASKS)


def test_story_prod_shorter_than_staging_and_after_hours_incidents(rows: list[HistoryRow]) -> None:
    by_env: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        by_env[(task_of(r.reason, r.ticket), r.labels["env"])].append(r.used_minutes)
    shorter = [t for t in ("deploy", "debugging", "report", "config change")
               if statistics.median(by_env[(t, "prod")]) < statistics.median(by_env[(t, "staging")])]
    assert len(shorter) >= 3, shorter
    incidents = [r for r in rows if task_of(r.reason, r.ticket) == "incident"]
    after = [r for r in incidents if r.requested_at.weekday() >= 5 or not 7 <= r.requested_at.hour < 19]
    assert 0.15 < len(after) / len(incidents) < 0.6
    used = sorted(r.used_minutes for r in rows)
    assert used[-1] > 5 * statistics.median(used)  # outliers exist
    assert any(r.extensions > 0 for r in rows) and all(r.extensions <= 2 for r in rows)


def test_negative_rows_refused() -> None:
    with pytest.raises(ValueError):
        generate(-1)


@pytest.mark.parametrize("reason, ticket, task", [
    ("run schema migration for billing", "", "migration"),
    ("alembic upgrade", "", "migration"),
    ("deploy release 2.3.1", "", "deploy"),
    ("roll back 1.2.0", "", "deploy"),
    ("update nginx config", "", "config change"),
    ("incident: checkout latency", "", "incident"),
    ("Pager alert: disk full", "", "incident"),
    ("debug failing job", "", "debugging"),
    ("investigate slow query on orders", "", "debugging"),
    ("monthly revenue report", "", "report"),
    ("export invoices for finance", "", "report"),
    ("quick check", "INC-42", "incident"),
    ("as discussed", "CHG-7", "config change"),
    ("as discussed", "", "other"),
    ("", "", "other"),
])
def test_task_from_reason_then_ticket(reason: str, ticket: str, task: str) -> None:
    assert classify_task(reason, ticket) == task
