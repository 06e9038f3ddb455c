"""Risk flags on unusual requests: an isolation forest over what a request looks like
against the requester's and their peers' own past.

Features (each larger = more unusual; RISK_FEATURES order), from past requests only:

* `hour_rarity`: how rarely this person asked within 1.5 h of this time of day;
* `day_rarity`: a weekend request by someone who rarely asks at weekends;
* `resource_new_user`, `resource_new_peers`: the resource is new to this person,
  to their peers (their group when the caller names it, else everyone);
* `access_new_user`: the login/role is new to this person on this kind of resource;
* `duration_over`: log of the asked duration over the recommendation (or the
  usual length of work on the resource), when above it;
* `burst`: requests by this person in the previous hour, against their usual pace;
* `absence`: the gap since this person's previous request, against their usual gap;
* `emergency_off_pattern`: break-glass whose words and hour look unlike past
  break-glass requests.

Training (`train_risk`) fits scikit-learn's IsolationForest on the features of a
history (each row from its own past) and saves its trees as plain arrays in
`risk.json` (with a SHA-256 in the file, so an edited file is refused). Serving
walks those arrays with numpy (no scikit-learn import, ~0.1 ms).

The score: each feature becomes a rarity (-log of the share of training
requests at or beyond it), and the request's statistic is its largest rarity
plus the forest's anomaly score (0 to 1). The largest rarity says how surprising
the single most unusual thing about the request is (a resource nobody near them
used, eight requests in an hour); the forest, which sees every feature together,
orders requests whose strongest surprise is alike by how odd the whole
combination is. (The forest alone dilutes one extreme feature among eight
ordinary ones: on the shop story it put 57% injected anomalies among the 1% most
risky, this statistic 78%; the harbor story was not looked at to choose it.)
The statistic becomes a score from 0 to 1, the share of training requests that
were less unusual, and the features beyond what 99% of training requests showed
are named as reasons. A missing or broken model gives `known = False` and
says why: the policies decide what an unknown score means.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from recommend.errors import ModelError, TrainingError
from recommend.features import in_time_order
from recommend.history import HistoryRow
from recommend.text import WordStats

log = logging.getLogger(__name__)

RISK_FILE = "risk.json"
RISK_FORMAT = 2  # 2: score_quantiles of the combined statistic (largest rarity + forest anomaly)
RISK_FEATURES: tuple[str, ...] = ("hour_rarity", "day_rarity", "resource_new_user", "resource_new_peers",
                                  "access_new_user", "duration_over", "burst", "absence", "emergency_off_pattern")
REASONS = {
    "hour_rarity": "hour unusual for this user",
    "day_rarity": "weekend request unusual for this user",
    "resource_new_user": "resource new to this user",
    "resource_new_peers": "resource new to this user's peers",
    "access_new_user": "login or role new to this user",
    "duration_over": "duration far above the recommendation",
    "burst": "burst of requests",
    "absence": "first request after a long absence",
    "emergency_off_pattern": "break-glass outside the usual incident pattern",
}
HOUR_WINDOW = 1.5  # hours either side of a time of day that count as "this hour" for a person
BURST_WINDOW = timedelta(hours=1)
# The requester's newest past requests a score reads: bounds the cost per request
# (200 added ~1.1 ms p99 to a decision, 100 ~0.75 ms, same precision).
USER_PAST_LIMIT = 100
MIN_TRAIN_ROWS = 200  # fewer rows: no risk model (an isolation forest of a few rows flags everyone)
N_TREES = 100  # isolation trees: scores stable to ~0.01 at this count
# Rows per tree: deeper trees (depth <= 10) separate one-feature anomalies from
# multi-feature oddities better than 256 on the shop story.
MAX_SAMPLES = 1024
MAX_SAVED_NODES = N_TREES * (2 * MAX_SAMPLES)  # a risk.json with more nodes is refused
REASON_PERCENTILE = 99.0  # a feature is named as a reason when beyond this share of training requests
_REASON_RARITY = -math.log(1.0 - REASON_PERCENTILE / 100.0)
_GRID_POINTS = 1001  # quantiles kept per feature: rarity resolved to 0.1% of training requests
MAX_REASONS = 3  # reasons named per request, strongest first
_QUANTILE_POINTS = 1001  # the training score distribution kept to map a depth to 0..1


@dataclass(frozen=True, slots=True)
class PastAsk:
    """A past request as risk scoring reads it (a HistoryRow has the same attributes)."""

    user: str
    resource: str
    access: str
    requested_at: datetime
    asked_minutes: float
    used_minutes: float
    reason: str = ""
    ticket: str = ""
    emergency: bool = False


def past_of(row: HistoryRow) -> PastAsk:
    return PastAsk(row.user, row.resource, row.access, row.requested_at, row.asked_minutes, row.used_minutes,
                   row.reason, row.ticket, row.emergency)


@dataclass(frozen=True)
class RiskAsk:
    """The request being scored."""

    user: str
    resource: str
    kind: str
    access: str
    at: datetime
    asked_minutes: float
    reason: str = ""
    ticket: str = ""
    emergency: bool = False
    recommended_minutes: float | None = None
    peers: frozenset[str] | None = None  # the requester's group; None: everyone


@dataclass(frozen=True)
class RiskScore:
    """POLICY.md's `risk`: `known`, `score` (0..1), `reasons` (when not known: why)."""

    known: bool
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    drivers: dict[str, float] = field(default_factory=dict)  # feature -> its value for this request

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "score": round(self.score, 4) if self.known else 0.0,
                "reasons": list(self.reasons)}


def unknown(why: str) -> RiskScore:
    return RiskScore(known=False, score=0.0, reasons=(why,))


@dataclass
class BreakGlassPattern:
    """What past break-glass requests looked like: their words (share of break-glass among the
    requests holding each word) and their hours of the day (everyone's)."""

    words: WordStats = field(default_factory=WordStats)
    hours: np.ndarray = field(default_factory=lambda: np.zeros(24))
    asks: WordStats = field(default_factory=WordStats)  # per word: mean log1p(asked minutes)

    def add(self, reason: str, ticket: str, emergency: bool, at: datetime, asked_minutes: float) -> None:
        self.words.add(reason, ticket, 1.0 if emergency else 0.0)
        self.asks.add(reason, ticket, asked_minutes)
        if emergency:
            self.hours[at.hour] += 1

    def ask_factor(self, reason: str, ticket: str) -> float:
        """How much longer than the average ask requests with these words usually ask (the word
        farthest from average; 1.0 without known words): long kinds of work ask long."""
        found, overall = self.asks.shrunk_means(reason, ticket), self.asks.overall
        if not found:
            return 1.0
        return math.exp(max(found, key=lambda estimate: abs(estimate - overall)) - overall)

    def lift(self, reason: str, ticket: str) -> float:
        """How much likelier break-glass is among past requests sharing a word of this reason than
        among all requests (the highest over its words; shrunk shares, so rare words say little)."""
        overall = self.words.overall
        if math.isnan(overall) or overall <= 0:
            return 0.0
        # log1p(0 or 1) means: ratios of shares
        return max((estimate / overall for estimate in self.words.shrunk_means(reason, ticket)), default=1.0)

    def hour_rarity(self, at: datetime) -> float:
        """How much rarer break-glass was within an hour of this time of day than if spread evenly."""
        total = self.hours.sum()
        near = sum(self.hours[(at.hour + d) % 24] for d in (-1, 0, 1))
        return max(0.0, -math.log(((near + 1) / (total + 2)) / (3 / 24)))


PATTERN_LIFT = 3.0  # break-glass words at least this much likelier than average: an incident pattern
_FLOOR = 1e-3  # the smallest lift a surprise is taken of (-log(0.001) ~ 6.9)


_REQUESTED_AT = attrgetter("requested_at")
_RESOURCE = attrgetter("resource")
_ACCESS = attrgetter("access")


def _surprise(seen: int, total: int) -> float:
    """-log of the smoothed chance of what was seen `seen` times in `total`."""
    return -math.log((seen + 1) / (total + 2))


def risk_features(ask: RiskAsk, mine: Sequence[Any], on_resource: Sequence[Any],
                  pattern: BreakGlassPattern | None) -> np.ndarray:
    """RISK_FEATURES of one ask. `mine`: the requester's past requests; `on_resource`: anyone's on
    the resource (PastAsk or HistoryRow), read only for a resource new to the person or a duration
    with nothing of theirs to compare with; only requests made before `ask.at` count (any order).

    Novelty is measured against the person's own habit of novelty: a resource new to someone
    who uses two resources is a surprise, to someone who tries a new one every week it is not.
    """
    at = ask.at
    # Sorted (stable), then cut before `at` by a binary search: the same rows in the same order as
    # filtering first, without a comparison per row in Python (callers mostly pass rows in time
    # order, so the sort is a linear pass).
    ordered = sorted(mine, key=_REQUESTED_AT)
    end = bisect_left(ordered, at, key=_REQUESTED_AT)
    past = ordered[max(0, end - USER_PAST_LIMIT):end]
    n = len(past)
    # Each attribute read by one C-level pass (list comprehension, map) and the arithmetic done by
    # numpy: this runs on every request, the hot path of a decision (a Python loop doing the same per
    # row cost about twice as much). Times of day and weekdays in UTC, from the epoch (1970-01-01 was
    # a Thursday, weekday 3).
    now_ts = at.timestamp()
    minute = (now_ts // 60) % 1440
    window, burst_from = HOUR_WINDOW * 60, now_ts - BURST_WINDOW.total_seconds()
    resource, prefix = ask.resource, ask.access.split(":", 1)[0] + ":"
    stamps = list(map(datetime.timestamp, map(_REQUESTED_AT, past)))
    if n:
        seconds = np.array(stamps)
        # within `window` minutes of the time of day either way round the clock: the minutes after
        # (minute - window), modulo a day, are at most 2 * window
        near = int(np.count_nonzero((seconds // 60 - (minute - window)) % 1440 <= 2 * window))
        weekend_n = int(np.count_nonzero((seconds // 86400 + 3) % 7 >= 5))
    else:
        near = weekend_n = 0
    recent = n - bisect_right(stamps, burst_from)  # stamps ascend: `past` is in time order
    resources = Counter(map(_RESOURCE, past))
    access_counts = Counter(map(_ACCESS, past))  # a few distinct values: count first, then filter
    accesses = [a for a in access_counts if a.startswith(prefix)]
    same_resource = resources[resource]
    same_kind = sum(access_counts[a] for a in accesses)
    same_access = access_counts[ask.access]
    # against an even spread over the day: 0 within the person's usual hours
    hour_rarity = max(0.0, -math.log(((near + 1) / (n + 2)) / (2 * HOUR_WINDOW / 24)))
    day_rarity = _surprise(weekend_n, n) if at.weekday() >= 5 else 0.0
    lift = pattern.lift(ask.reason, ask.ticket) if pattern is not None else 0.0
    if pattern is not None and ask.emergency:
        hour_rarity, day_rarity = pattern.hour_rarity(at), 0.0  # break-glass keeps break-glass hours
    elif pattern is not None and lift >= PATTERN_LIFT:
        # incident words without break-glass: the hours of everyone's break-glass explain it as well
        hour_rarity, day_rarity = min(hour_rarity, pattern.hour_rarity(at)), 0.0
    new_resource = same_resource == 0
    resource_new_user = -math.log((len(resources) + 1) / (n + 2)) if new_resource else 0.0
    if new_resource:
        peers = {p.user for p in on_resource if p.requested_at < at and p.user != ask.user
                 and (ask.peers is None or p.user in ask.peers)}
        resource_new_peers = 1.0 / (1.0 + len(peers))
    else:
        resource_new_peers = 0.0
    access_new_user = -math.log((len(accesses) + 1) / (same_kind + 2)) if same_access == 0 and same_kind else 0.0
    reference = _reference_minutes(ask, past, on_resource)
    if pattern is not None and ask.recommended_minutes is None:
        reference *= pattern.ask_factor(ask.reason, ask.ticket)
    duration_over = max(0.0, math.log(ask.asked_minutes / reference))
    if n >= 2:
        span_days = (stamps[-1] - stamps[0]) / 86400
        burst = max(0.0, math.log1p(recent) - math.log1p(n / max(1.0, span_days * 24)))
        gaps = np.sort(seconds[1:] - seconds[:-1])  # the median gap: a person's usual pace
        typical_gap = float(gaps[(len(gaps) - 1) // 2] + gaps[len(gaps) // 2]) / 2 / 86400
        since = (now_ts - stamps[-1]) / 86400
        absence = max(0.0, math.log1p(since) - math.log1p(typical_gap))
    else:
        burst, absence = math.log1p(recent), 0.0
    emergency_off_pattern = 0.0
    if ask.emergency:
        emergency_off_pattern = max(0.0, math.log(PATTERN_LIFT) - math.log(max(_FLOOR, lift)))
    return np.array([hour_rarity, day_rarity, resource_new_user, resource_new_peers, access_new_user,
                     duration_over, burst, absence, emergency_off_pattern], dtype=np.float64)


def _reference_minutes(ask: RiskAsk, past: Sequence[Any], on_resource: Sequence[Any]) -> float:
    """The recommendation, else the usual (median) ask of this person on the resource, of anyone on
    it, of this person, else an hour (each list built only when the one before is empty)."""
    if ask.recommended_minutes is not None and ask.recommended_minutes > 0:
        return ask.recommended_minutes
    pool = [p.asked_minutes for p in past if p.resource == ask.resource] \
        or [p.asked_minutes for p in on_resource[-250:] if p.requested_at < ask.at] \
        or [p.asked_minutes for p in past]
    if not pool:
        return 60.0
    pool = sorted(pool)
    return max(1.0, pool[len(pool) // 2])


PeersOf = Callable[[str], "frozenset[str] | None"]  # a user's peers (None: everyone), as the caller knows them


def history_features(rows: Sequence[HistoryRow], peers_of: PeersOf | None = None
                     ) -> tuple[np.ndarray, BreakGlassPattern]:
    """Features of every row of a time-ordered history, each from the rows asked before it; and the
    break-glass pattern of the whole history. `peers_of` names each requester's peers as serving
    will (e.g. their policy groups' members); without it everyone is a peer."""
    by_user: dict[str, list[HistoryRow]] = {}
    by_resource: dict[str, list[HistoryRow]] = {}
    pattern = BreakGlassPattern()
    out = np.empty((len(rows), len(RISK_FEATURES)), dtype=np.float64)
    for i, row in enumerate(rows):
        ask = ask_of_row(row) if peers_of is None else ask_of_row(row, peers=peers_of(row.user))
        out[i] = risk_features(ask, by_user.get(row.user, [])[-USER_PAST_LIMIT:],
                               by_resource.get(row.resource, [])[-250:], pattern)
        by_user.setdefault(row.user, []).append(row)
        by_resource.setdefault(row.resource, []).append(row)
        pattern.add(row.reason, row.ticket, row.emergency, row.requested_at, row.asked_minutes)
    return out, pattern


def ask_of_row(row: HistoryRow, **changes: Any) -> RiskAsk:
    """The risk ask of a history row (fields in `changes` replaced)."""
    fields: dict[str, Any] = dict(
        user=row.user, resource=row.resource, kind=row.kind, access=row.access, at=row.requested_at,
        asked_minutes=row.asked_minutes, reason=row.reason, ticket=row.ticket, emergency=row.emergency)
    fields.update(changes)
    return RiskAsk(**fields)


# -- the model ---------------------------------------------------------------------


@dataclass
class RiskModel:
    """An isolation forest as arrays, the training score distribution and per-feature thresholds."""

    feature: np.ndarray  # per node: split feature (-1: leaf)
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf_depth: np.ndarray  # per node: path length credited at a leaf (depth + c(n_samples))
    roots: np.ndarray  # each tree's root node index
    max_samples: int
    score_quantiles: np.ndarray  # sorted statistics (RiskModel.statistic) of training rows (subsampled)
    grid: np.ndarray  # per feature (rows): _GRID_POINTS quantiles of its training values, sorted
    pattern: BreakGlassPattern
    trained_until: str = ""
    rows: int = 0

    def rarity(self, x: np.ndarray) -> np.ndarray:
        """Each feature as -log of the share of training requests at or above it: features of any
        scale become comparable, and one feature beyond all training requests counts fully."""
        flat, offsets, starts, top, spread = self._flat
        points = self.grid.shape[1]
        # One binary search over all features' grids laid end to end (the hot path): the same count
        # as searchsorted(grid[j], x[j]) for each j.
        # (np.minimum/np.maximum: np.clip's Python wrapper costs more than the clipping, same integers)
        below = np.minimum(np.maximum(np.searchsorted(flat, x + offsets, side="left") - starts, 0), points)
        return -np.log(np.maximum(1.0 - below / points, 1.0 / points)) + np.log1p(np.maximum(x - top, 0.0) / spread)

    @functools.cached_property
    def _flat(self) -> tuple[np.ndarray, ...]:
        """The grid's rows shifted apart so that, laid end to end, they stay sorted; each row's shift,
        its start in the flat array, and its top value and top-1% range."""
        grid = self.grid
        features, points = grid.shape
        width = float(grid.max() - grid.min()) + 1.0
        offsets = np.arange(features) * width
        top, spread = grid[:, -1], np.maximum(grid[:, -1] - grid[:, -(points // 100) - 1], 1e-6)
        return (grid + offsets[:, None]).ravel(), offsets, np.arange(features) * points, top, spread

    def anomaly(self, x: np.ndarray) -> float:
        """sklearn's anomaly score 2^(-E[h(r)] / c(max_samples)) of the rarities r of one feature row."""
        return self.forest_anomaly(self.rarity(x))

    def statistic(self, x: np.ndarray) -> float:
        """The scored statistic of one feature row: its largest rarity plus the forest's anomaly."""
        rarity = self.rarity(x)
        return float(rarity.max()) + self.forest_anomaly(rarity)

    def forest_anomaly(self, x: np.ndarray) -> float:
        """The isolation forest's anomaly score of one (already transformed) row: every tree walked at
        once, one level per step (a leaf points to itself, so walking on past it changes nothing)."""
        node = self.roots
        feature, threshold, children = self._walk
        for _ in range(self._depth):  # 1-D take(): cheaper than fancy indexing on these small arrays
            node = children.take(2 * node + (x.take(feature.take(node)) > threshold.take(node)))
        depth = np.add.reduce(self.leaf_depth[node]) / len(node)  # .mean() without its Python wrapper
        return float(2.0 ** (-depth / _average_path(self.max_samples)))

    @functools.cached_property
    def _walk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Node arrays for the walk: leaves split on feature 0 at +inf and lead to themselves."""
        leaf = self.feature < 0
        index = np.arange(len(self.feature))
        # node n's children at 2n (left) and 2n + 1 (right)
        children = np.stack([np.where(leaf, index, self.left), np.where(leaf, index, self.right)], axis=1).ravel()
        return (np.where(leaf, 0, self.feature), np.where(leaf, np.inf, self.threshold), children)

    @functools.cached_property
    def _depth(self) -> int:
        """The deepest leaf's depth (from the roots), the number of steps a walk needs."""
        depth = np.zeros(len(self.feature), dtype=np.int64)
        for node in range(len(self.feature)):  # children come after their parent
            if self.feature[node] >= 0:
                depth[self.left[node]] = depth[self.right[node]] = depth[node] + 1
        return int(depth.max()) if len(depth) else 0

    def score(self, ask: RiskAsk, mine: Sequence[Any], on_resource: Sequence[Any]) -> RiskScore:
        x = risk_features(ask, mine, on_resource, self.pattern)
        rarity = self.rarity(x)
        raw = float(rarity.max()) + self.forest_anomaly(rarity)
        # Nine values: plain Python lists cost less than numpy calls here (same comparisons, same order).
        quantiles = self._quantile_list
        share = bisect_left(quantiles, raw) / len(quantiles)
        rare, values = rarity.tolist(), x.tolist()
        named = [j for j, (r, v) in enumerate(zip(rare, values, strict=True)) if r >= _REASON_RARITY and v > 0]
        strongest = sorted(named, key=lambda j: -rare[j])[:MAX_REASONS]  # stable: ties keep feature order
        drivers = dict(zip(RISK_FEATURES, x.round(4).tolist(), strict=True))
        return RiskScore(known=True, score=min(1.0, max(0.0, share)),
                         reasons=tuple(REASONS[RISK_FEATURES[j]] for j in strongest), drivers=drivers)

    @functools.cached_property
    def _quantile_list(self) -> list[float]:
        """score_quantiles as floats, for bisect (the training distribution, fixed once fitted)."""
        return [float(v) for v in self.score_quantiles]

    def to_json(self) -> dict[str, Any]:
        body = {
            "format": RISK_FORMAT, "features": list(RISK_FEATURES), "max_samples": self.max_samples,
            "feature": self.feature.tolist(), "threshold": [round(float(v), 6) for v in self.threshold],
            "left": self.left.tolist(), "right": self.right.tolist(),
            "leaf_depth": [round(float(v), 6) for v in self.leaf_depth], "roots": self.roots.tolist(),
            "score_quantiles": [round(float(v), 6) for v in self.score_quantiles],
            "grid": [[round(float(v), 6) for v in row] for row in self.grid],
            "emergency_words": self.pattern.words.to_json(), "ask_words": self.pattern.asks.to_json(),
            "emergency_hours": [float(v) for v in self.pattern.hours], "trained_until": self.trained_until,
            "rows": self.rows,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "body": body}

    @classmethod
    def from_json(cls, obj: Any) -> RiskModel:
        """Inverse of to_json; raises ValueError naming what is wrong."""
        if not isinstance(obj, dict) or not isinstance(obj.get("body"), dict):
            raise ValueError("not a risk model")
        body = obj["body"]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        if hashlib.sha256(text.encode()).hexdigest() != obj.get("sha256"):
            raise ValueError("checksum mismatch (edited or truncated)")
        if body.get("format") != RISK_FORMAT or body.get("features") != list(RISK_FEATURES):
            raise ValueError("made by another version of jitgate")
        arrays = {name: np.asarray(body[name]) for name in ("feature", "threshold", "left", "right", "leaf_depth")}
        nodes = len(arrays["feature"])
        if nodes > MAX_SAVED_NODES or any(len(a) != nodes for a in arrays.values()):
            raise ValueError(f"tree arrays of unequal length or over {MAX_SAVED_NODES} nodes")
        feature = arrays["feature"].astype(np.int64)
        left, right = arrays["left"].astype(np.int64), arrays["right"].astype(np.int64)
        roots = np.asarray(body["roots"], dtype=np.int64)
        inner = feature >= 0
        if (feature >= len(RISK_FEATURES)).any() or ((left[inner] <= np.nonzero(inner)[0]).any()) \
                or (right[inner] >= nodes).any() or (left[inner] >= nodes).any() \
                or len(roots) == 0 or (roots < 0).any() or (roots >= nodes).any():
            raise ValueError("tree arrays do not form trees")
        quantiles = np.asarray(body["score_quantiles"], dtype=np.float64)
        grid = np.asarray(body["grid"], dtype=np.float64)
        if len(quantiles) == 0 or grid.ndim != 2 or grid.shape[0] != len(RISK_FEATURES) \
                or not 2 <= grid.shape[1] <= _GRID_POINTS or not np.isfinite(grid).all():
            raise ValueError("score distribution or feature grid missing or malformed")
        return cls(feature=feature, threshold=arrays["threshold"].astype(np.float64), left=left, right=right,
                   leaf_depth=arrays["leaf_depth"].astype(np.float64), roots=roots,
                   max_samples=int(body["max_samples"]), score_quantiles=np.sort(quantiles),
                   grid=np.sort(grid, axis=1), pattern=_pattern_from_json(body),
                   trained_until=str(body.get("trained_until", "")), rows=int(body.get("rows", 0)))


def rarity_matrix(features: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """RiskModel.rarity of many rows (training)."""
    points = grid.shape[1]
    below = np.stack([np.searchsorted(grid[j], features[:, j], side="left") for j in range(features.shape[1])], axis=1)
    rarity = -np.log(np.maximum(1.0 - below / points, 1.0 / points))
    # Beyond every training value, rarity keeps growing with the distance past the top 1%'s range,
    # so 8 requests in an hour stay rarer than 3 where both exceed all training requests.
    top, spread = grid[:, -1], np.maximum(grid[:, -1] - grid[:, -(points // 100) - 1], 1e-6)
    return rarity + np.log1p(np.maximum(features - top, 0.0) / spread)


def _pattern_from_json(body: dict[str, Any]) -> BreakGlassPattern:
    hours = np.asarray(body["emergency_hours"], dtype=np.float64)
    if hours.shape != (24,) or not np.isfinite(hours).all() or (hours < 0).any():
        raise ValueError("`emergency_hours` must be 24 counts")
    return BreakGlassPattern(
        WordStats.from_json(body["emergency_words"]), hours, WordStats.from_json(body["ask_words"])
    )


def _average_path(n: int) -> float:
    """c(n): the average path length of an unsuccessful search in a binary tree of n points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1) + 0.5772156649) - 2.0 * (n - 1) / n


def fit_risk(features: np.ndarray, pattern: BreakGlassPattern, seed: int = 42) -> RiskModel:
    """An isolation forest (scikit-learn) on training feature rows, as arrays."""
    if len(features) < MIN_TRAIN_ROWS:
        raise TrainingError(f"too little history for a risk model: {len(features)} rows, need {MIN_TRAIN_ROWS}")
    from sklearn.ensemble import IsolationForest  # training only: serving needs no scikit-learn

    grid = np.quantile(features, np.linspace(0.0, 1.0, _GRID_POINTS), axis=0).T
    transformed = rarity_matrix(features, grid)
    forest = IsolationForest(n_estimators=N_TREES, max_samples=min(MAX_SAMPLES, len(features)),
                             random_state=seed, n_jobs=1).fit(transformed)
    feature: list[int]
    feature, threshold, left, right, leaf_depth, roots = [], [], [], [], [], []
    for tree, used in zip(forest.estimators_, forest.estimators_features_, strict=True):
        t = tree.tree_
        base = len(feature)
        roots.append(base)
        depth = np.zeros(t.node_count)
        for node in range(t.node_count):  # children come after their parent in sklearn's arrays
            if t.children_left[node] >= 0:
                depth[t.children_left[node]] = depth[node] + 1
                depth[t.children_right[node]] = depth[node] + 1
        for node in range(t.node_count):
            leaf = t.children_left[node] < 0
            feature.append(-1 if leaf else int(used[t.feature[node]]))
            threshold.append(0.0 if leaf else float(t.threshold[node]))
            left.append(-1 if leaf else base + int(t.children_left[node]))
            right.append(-1 if leaf else base + int(t.children_right[node]))
            leaf_depth.append(depth[node] + _average_path(int(t.n_node_samples[node])) if leaf else 0.0)
    model = RiskModel(feature=np.array(feature, dtype=np.int64), threshold=np.array(threshold),
                      left=np.array(left, dtype=np.int64), right=np.array(right, dtype=np.int64),
                      leaf_depth=np.array(leaf_depth), roots=np.array(roots, dtype=np.int64),
                      max_samples=int(forest.max_samples_), score_quantiles=np.array([0.0]),
                      grid=grid,
                      pattern=pattern, rows=len(features))
    sample = features[np.linspace(0, len(features) - 1, min(len(features), 3 * _QUANTILE_POINTS)).astype(int)]
    scores = np.sort([model.statistic(x) for x in sample])  # the served path, so the 0..1 map matches it
    # a new model rather than an assignment: its cached serving arrays are built from the final fields
    return replace(model, score_quantiles=scores[np.linspace(0, len(scores) - 1,
                                                             min(len(scores), _QUANTILE_POINTS)).astype(int)])


def train_risk(rows: Sequence[HistoryRow], seed: int = 42, peers_of: PeersOf | None = None) -> RiskModel:
    """A risk model from a whole history (peers as `history_features` reads them)."""
    ordered = in_time_order(rows)
    features, pattern = history_features(ordered, peers_of)
    model = fit_risk(features, pattern, seed)
    model.trained_until = ordered[-1].requested_at.isoformat() if ordered else ""
    return model


def save_risk(model_dir: str | os.PathLike[str], model: RiskModel) -> None:
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{RISK_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(model.to_json(), separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, directory / RISK_FILE)


def load_risk(model_dir: str | os.PathLike[str]) -> RiskModel:
    """Load `risk.json`; raises ModelError with a plain reason."""
    path = Path(model_dir) / RISK_FILE
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"no risk model in {model_dir} (run `jitgate recommend train`)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable ({exc})") from None
    try:
        return RiskModel.from_json(obj)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: corrupt risk model ({exc}); retrain the model") from None


def score_request(model: RiskModel | None, load_error: str | None, ask: RiskAsk,
                  mine: Sequence[HistoryRow], on_resource: Sequence[HistoryRow]) -> RiskScore:
    """A request's risk from the rows a caller knows: the requester's and anyone's on the resource
    (a HistoryRow has every attribute of a PastAsk); never raises: without a model, or when it fails,
    the score is unknown and says why."""
    if model is None:
        return unknown(f"no risk model: {load_error or 'not trained'}")
    try:
        return model.score(ask, mine, on_resource)
    except Exception as exc:  # a broken model must not fail a request: unknown, and why
        log.warning("risk model failed: %s", exc)
        return unknown(f"the risk model failed ({type(exc).__name__})")
