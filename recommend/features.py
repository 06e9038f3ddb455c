"""Features of a request, identical for training and serving.

A request is described by what it asks (task type from the keyword list as a
prior, and the words of its reason and ticket as this history has used them
(recommend.text), kind, env and sensitivity labels, login/role, user, resource,
hour, weekday), by the requester's own past on this resource, this task and
this kind of resource, and by their habits (what they asked for before, how
much more they ask than they use, their pace against what their reasons' words
predicted). The past of a row is only what had *finished* before it was asked
(`requested_at + used_minutes <= now`): no row ever sees its own outcome or a
later one.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import itemgetter

import numpy as np

from recommend.history import HistoryRow
from recommend.tasks import classify_task
from recommend.text import TEXT_FEATURES, WordStats

FEATURE_VERSION = 3
# A person's habits, learned from their past only: what they asked for on this resource and for
# this kind of work (asks carry what people know of their work, without a session's noise), how
# much more they ask than they use, the ask corrected by that habit, and their pace (mean
# log(used) residual against what their reasons' words predicted when asked).
PACE_FEATURES: tuple[str, ...] = ("u_res_ask", "u_task_ask", "u_ask_habit", "u_ask_need", "u_pace")
CATEGORICAL: tuple[str, ...] = ("task", "work", "kind", "env", "sensitivity", "access", "user", "resource")
NUMERIC: tuple[str, ...] = (
    "hour", "weekday", "after_hours", "u_res_n", "u_res_med", "u_res_p80", "u_res_last", "u_res_task_med",
    "u_task_med", "u_kind_n", "u_kind_med", "u_ext_share", *PACE_FEATURES, *TEXT_FEATURES,
)
FEATURES: tuple[str, ...] = CATEGORICAL + NUMERIC
_RECENT = 10  # how many past grants per key the history features look at
_PACE_RECENT = 30  # past grants of a person their pace and their habit of asking are read from
_BY_FINISH = itemgetter(0, 1)  # (finished_at, requested_at, row) -> order in which grants became known

RawFeatures = tuple  # CATEGORICAL as str, then NUMERIC as float (nan = unknown)


def _log_ratio(asked: float, used: float) -> float:
    return math.log1p(asked) - math.log1p(used)


def _pace_features(res_asks: Sequence[float], task_asks: Sequence[float], ratios: Sequence[float],
                   residuals: Sequence[float]) -> tuple[float, float, float, float, float]:
    """PACE_FEATURES from a person's recent asks on the resource and for the kind of work, their
    log(asked/used) and their log(used) residuals against what the words of each reason predicted."""
    ask = _median(task_asks) if task_asks else _median(res_asks)
    habit = _median(ratios)
    need = math.expm1(max(0.0, math.log1p(ask) - habit)) if ask == ask and habit == habit else math.nan
    pace = sum(residuals) / len(residuals) if residuals else math.nan
    return _median(res_asks), _median(task_asks), habit, need, pace


@dataclass(frozen=True)
class Ask:
    """What a request asks, the part of it the features read."""

    user: str
    resource: str
    kind: str
    labels: Mapping[str, str]
    access: str
    reason: str
    ticket: str
    at: datetime


def ask_of(row: HistoryRow) -> Ask:
    """The ask of a past grant."""
    return Ask(row.user, row.resource, row.kind, row.labels, row.access, row.reason, row.ticket, row.requested_at)


@lru_cache(maxsize=8192)
def task_of(reason: str, ticket: str) -> str:
    """classify_task, cached: histories repeat the same reasons."""
    return classify_task(reason, ticket)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of a non-empty sequence (numpy's default method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _median(values: Iterable[float]) -> float:
    items = list(values)
    return quantile(items, 0.5) if items else math.nan


class PersonalHistory:
    """Running per-person statistics over finished grants (newest last)."""

    def __init__(self) -> None:
        self._res: dict[tuple[str, str], deque[float]] = {}
        self._res_task: dict[tuple[str, str, str], deque[float]] = {}
        self._task: dict[tuple[str, str], deque[float]] = {}
        self._kind: dict[tuple[str, str], deque[float]] = {}
        self._extended: dict[str, deque[bool]] = {}
        self._res_n: dict[tuple[str, str], int] = {}
        self._kind_n: dict[tuple[str, str], int] = {}
        self._res_ask: dict[tuple[str, str], deque[float]] = {}
        self._task_ask: dict[tuple[str, str], deque[float]] = {}
        self._ratio: dict[str, deque[float]] = {}
        self._residual: dict[str, deque[float]] = {}

    def add(self, row: HistoryRow, work: str, expected: float = math.nan) -> None:
        """Count one finished grant of kind of work `work` whose words predicted `expected`
        log1p(minutes) when it was asked (called in the order grants finished)."""
        task = work
        _push(self._res_ask, (row.user, row.resource), row.asked_minutes, _RECENT)
        _push(self._task_ask, (row.user, task), row.asked_minutes, _RECENT)
        _push(self._ratio, row.user, _log_ratio(row.asked_minutes, row.used_minutes), _PACE_RECENT)
        if expected == expected:
            _push(self._residual, row.user, math.log1p(row.used_minutes) - expected, _PACE_RECENT)
        used, user = row.used_minutes, row.user
        res_key, kind_key = (user, row.resource), (user, row.kind)
        _push(self._res, res_key, used, _RECENT)
        _push(self._res_task, (user, row.resource, task), used, 5)
        _push(self._task, (user, task), used, _RECENT)
        _push(self._kind, kind_key, used, _RECENT)
        _push(self._extended, user, row.extensions > 0, 20)
        self._res_n[res_key] = self._res_n.get(res_key, 0) + 1
        self._kind_n[kind_key] = self._kind_n.get(kind_key, 0) + 1

    def features(self, ask: Ask, work: str) -> RawFeatures:
        """The raw feature tuple of one ask, in FEATURES order minus the text features."""
        task = work
        at = ask.at
        after_hours = at.weekday() >= 5 or at.hour < 7 or at.hour >= 19
        res = self._res.get((ask.user, ask.resource), ())
        extended = self._extended.get(ask.user, ())
        return (
            task_of(ask.reason, ask.ticket), work, ask.kind, ask.labels.get("env", ""),
            ask.labels.get("sensitivity", ""), ask.access, ask.user, ask.resource,
            float(at.hour) + at.minute / 60.0, float(at.weekday()), float(after_hours),
            float(self._res_n.get((ask.user, ask.resource), 0)),
            _median(res),
            quantile(list(res), 0.8) if res else math.nan,
            res[-1] if res else math.nan,
            _median(self._res_task.get((ask.user, ask.resource, task), ())),
            _median(self._task.get((ask.user, task), ())),
            float(self._kind_n.get((ask.user, ask.kind), 0)),
            _median(self._kind.get((ask.user, ask.kind), ())),
            (sum(extended) / len(extended)) if extended else math.nan,
            *_pace_features(self._res_ask.get((ask.user, ask.resource), ()), self._task_ask.get((ask.user, task), ()),
                            self._ratio.get(ask.user, ()), self._residual.get(ask.user, ())),
        )


def _push(table: dict, key: object, value: object, keep: int) -> None:
    found = table.get(key)
    if found is None:
        table[key] = found = deque(maxlen=keep)
    found.append(value)


def in_time_order(rows: Iterable[HistoryRow]) -> list[HistoryRow]:
    """Rows sorted by requested_at; ties broken by user, resource and used time so that
    the order of a file's lines never changes the features (or the model)."""
    return sorted(rows, key=lambda r: (r.requested_at, r.user, r.resource, r.used_minutes))


def with_finished_past(rows: Sequence[HistoryRow]) -> Iterator[tuple[HistoryRow, list[HistoryRow]]]:
    """For time-ordered rows: (row, rows that finished since the previous row and by its request).

    A consumer that adds the second item to its state before looking at the row
    sees exactly the grants that had finished when the row was asked.
    """
    pending: list[tuple[datetime, int, HistoryRow]] = []
    for seq, row in enumerate(rows):
        done = []
        while pending and pending[0][0] <= row.requested_at:
            done.append(heapq.heappop(pending)[2])
        yield row, done
        heapq.heappush(pending, (row.finished_at, seq, row))


def past_features(
    rows: Sequence[HistoryRow], freeze_words_at: int | None = None
) -> tuple[list[RawFeatures], WordStats]:
    """Raw features of every time-ordered row, each from its own finished past only.

    From row `freeze_words_at` on, the word statistics stop learning (as a saved model's
    table does): held-out rows are measured with the words known at training time.
    Returns the features and the word statistics as frozen (or at the end).
    """
    history = PersonalHistory()
    words = WordStats()
    # A grant's kind of work and its words' prediction as known when it was asked (by id: rows are
    # not hashable by value, and the same row object may be passed twice).
    work_at_ask: dict[int, list[tuple[str, float]]] = {}
    out = []
    for index, (row, done) in enumerate(with_finished_past(rows)):
        learn = freeze_words_at is None or index < freeze_words_at
        for past in done:
            history.add(past, *work_at_ask[id(past)].pop(0))
            if learn:
                words.add(past.reason, past.ticket, past.used_minutes)
        work = words.work_of(row.reason, row.ticket, row.task)
        work_at_ask.setdefault(id(row), []).append((work, words.expected(row.reason, row.ticket)))
        out.append(history.features(ask_of(row), work) + words.features(row.reason, row.ticket))
    return out, words


@dataclass(frozen=True)
class Served:
    """What serving needs from the requester's past for one ask."""

    raw: RawFeatures
    work: str  # the kind of work (recommend.text.WordStats.work_of; the task type without words)
    recent_on_resource: list[float]  # used minutes, oldest first (at most 10)
    recent_same_task: list[float]  # used minutes of the same task on any resource (at most 10)


def features_for(ask: Ask, rows: Iterable[HistoryRow], words: WordStats | None = None) -> Served:
    """The features of one ask from the requester's finished grants in `rows` and the
    model's word statistics (None: the text features are unknown).

    Equal to `PersonalHistory.features` over the same past (a test holds them
    together), but one pass with plain lists: this runs on every request.
    """
    prior = task_of(ask.reason, ask.ticket)
    task = words.work_of(ask.reason, ask.ticket, prior) if words is not None else prior
    user, resource, kind, at = ask.user, ask.resource, ask.kind, ask.at
    mine = [(r.finished_at, r.requested_at, r) for r in rows if r.user == user and r.finished_at <= at]
    mine.sort(key=_BY_FINISH)
    res: list[float] = []
    res_task: list[float] = []
    same_task: list[float] = []
    same_kind: list[float] = []
    res_ask: list[float] = []
    task_ask: list[float] = []
    ratios: list[float] = []
    residuals: list[float] = []
    for _, _, row in mine:
        used = row.used_minutes
        row_task = words.work_of(row.reason, row.ticket, row.task) if words is not None else row.task
        if row.resource == resource:
            res.append(used)
            res_ask.append(row.asked_minutes)
            if row_task == task:
                res_task.append(used)
        if row_task == task:
            same_task.append(used)
            task_ask.append(row.asked_minutes)
        if row.kind == kind:
            same_kind.append(used)
    for _, _, row in mine[-_PACE_RECENT:]:
        ratios.append(_log_ratio(row.asked_minutes, row.used_minutes))
        expected = words.expected(row.reason, row.ticket) if words is not None else math.nan
        if expected == expected:
            residuals.append(math.log1p(row.used_minutes) - expected)
    extended = [row.extensions > 0 for _, _, row in mine[-20:]]
    recent = res[-_RECENT:]
    after_hours = at.weekday() >= 5 or at.hour < 7 or at.hour >= 19
    raw = (
        prior, task, kind, ask.labels.get("env", ""), ask.labels.get("sensitivity", ""), ask.access, user, resource,
        float(at.hour) + at.minute / 60.0, float(at.weekday()), float(after_hours),
        float(len(res)),
        _median(recent),
        quantile(recent, 0.8) if recent else math.nan,
        recent[-1] if recent else math.nan,
        _median(res_task[-5:]),
        _median(same_task[-_RECENT:]),
        float(len(same_kind)),
        _median(same_kind[-_RECENT:]),
        (sum(extended) / len(extended)) if extended else math.nan,
        *_pace_features(res_ask[-_RECENT:], task_ask[-_RECENT:], ratios, residuals),
    ) + (words.features(ask.reason, ask.ticket) if words is not None else (math.nan,) * len(TEXT_FEATURES))
    return Served(raw=raw, work=task, recent_on_resource=recent, recent_same_task=same_task[-_RECENT:])


Vocabularies = dict[str, list[str]]


def make_vocabularies(raw: Sequence[RawFeatures]) -> Vocabularies:
    """Sorted distinct values of each categorical feature (a category's code is its index)."""
    return {name: sorted({r[i] for r in raw}) for i, name in enumerate(CATEGORICAL)}


def encode(raw: Sequence[RawFeatures], vocab: Vocabularies) -> np.ndarray:
    """A float matrix in FEATURES order; an unknown category becomes NaN (missing)."""
    index = [{value: code for code, value in enumerate(vocab[name])} for name in CATEGORICAL]
    ncat = len(CATEGORICAL)
    out = np.empty((len(raw), len(FEATURES)), dtype=np.float64)
    for i, r in enumerate(raw):
        for j in range(ncat):
            out[i, j] = index[j].get(r[j], math.nan)
        out[i, ncat:] = r[ncat:]
    return out
