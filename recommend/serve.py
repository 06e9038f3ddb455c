"""Serving recommendations: one loaded booster, cheap per call, safe from many threads.

`history` passed to `Recommender.recommend` is what the caller knows of past
grants: the requester's own (any resource) drive the personal features and the
"your last 5 on ..." part; rows of other people on the same resource or kind are
used only by the cold-start fallback. Only grants finished before the request
time count.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from recommend.calibrate import DEFAULT_COVERAGE, check_coverage
from recommend.durations import format_minutes
from recommend.errors import ModelError
from recommend.features import CATEGORICAL, FEATURES, Ask, Served, features_for, quantile, task_of
from recommend.history import HistoryRow
from recommend.model import META_FILE, MODEL_FILE, ModelBundle, load_model
from recommend.risk import RISK_FILE, RiskAsk, RiskModel, RiskScore, load_risk, score_request
from recommend.rounding import offer
from recommend.stats import GroupStats, group_keys

log = logging.getLogger(__name__)

MIN_RESOURCE_ROWS = 20  # training rows on a resource before the model is trusted for it
MIN_STAT_ROWS = 5  # grants in a group before its statistics are used
DEFAULT_MINUTES = 60.0
CHECK_EVERY_SECONDS = 2.0  # how often a serving Recommender looks for a new model on disk
_KIND_NOUN = {"postgres": "databases", "ssh": "hosts"}


@dataclass(frozen=True)
class RecommendRequest:
    """What a person asks for, minus the duration."""

    user: str
    resource: str
    kind: str
    labels: Mapping[str, str] = field(default_factory=dict)
    login: str | None = None
    role: str | None = None
    reason: str = ""
    ticket: str = ""
    requested_at: datetime | None = None  # None: now

    def __post_init__(self) -> None:
        if not self.user or not self.resource or not self.kind:
            raise ValueError("a recommendation request needs `user`, `resource` and `kind`")
        if self.login is not None and self.role is not None:
            raise ValueError("give `login` (ssh) or `role` (database), not both")
        if self.requested_at is not None and self.requested_at.tzinfo is None:
            raise ValueError("`requested_at` needs a time zone")

    def ask(self) -> Ask:
        access = f"login:{self.login}" if self.login is not None else f"role:{self.role}"
        at = (self.requested_at or datetime.now(UTC)).astimezone(UTC)
        return Ask(self.user, self.resource, self.kind, self.labels, access, self.reason, self.ticket, at)


@dataclass(frozen=True)
class Recommendation:
    """A recommended duration and why.

    `basis` is `model`, or for a fallback `resource`, `kind` or `default`
    (which statistics were used); `model_version` is None without a model.
    """

    duration: timedelta
    minutes: int
    explanation: str
    fallback: bool
    basis: str
    model_version: str | None


@dataclass(frozen=True)
class _Loaded:
    bundle: ModelBundle
    index: tuple[dict[str, int], ...]  # category -> code, per categorical feature

    def resource_rows(self, resource: str) -> int:
        stats = self.bundle.metadata.stats.get("resource", {}).get(resource)
        return stats.n if stats else 0


class Recommender:
    """Loads the model in `model_dir` once; a missing or corrupt model is logged (see
    `load_error`) and answers are then fallbacks. Thread-safe: share one instance
    between worker threads.

    A new model is picked up without a restart: at most every `check_every` seconds
    a call to `recommend` looks at the model files' size and modification time and
    reloads when they changed (`train` writes model.json last, atomically). None
    turns that off; `reload()` can always be called directly (e.g. on SIGHUP).
    """

    def __init__(self, model_dir: str | os.PathLike[str] | None, *, min_resource_rows: int = MIN_RESOURCE_ROWS,
                 check_every: float | None = CHECK_EVERY_SECONDS, coverage: float = DEFAULT_COVERAGE) -> None:
        self._dir = Path(model_dir) if model_dir is not None else None
        self.coverage = check_coverage(coverage)
        self._min_resource_rows = min_resource_rows
        self._check_every = check_every
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._seen: tuple | None = None  # what the files looked like at the last (re)load attempt
        self._next_check = 0.0
        self.load_error: str | None = "no model directory configured"
        self._risk: RiskModel | None = None
        self.risk_error: str | None = "no model directory configured"
        self.reload()

    @property
    def model_version(self) -> str | None:
        loaded = self._loaded
        return loaded.bundle.metadata.version if loaded else None

    def _files_now(self) -> tuple:
        out: list[tuple[int, int, int] | None] = []
        for name in (MODEL_FILE, META_FILE, RISK_FILE):
            try:
                st = os.stat(self._dir / name)  # type: ignore[operator]
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def reload(self) -> bool:
        """(Re)load the model from disk. True if the model on disk was loaded; on failure
        `load_error` says why and a model loaded earlier keeps serving (else fallbacks)."""
        if self._dir is None:
            return False
        with self._reload_lock:
            self._seen = self._files_now()  # before loading: a write during the load is seen next time
            self._load_risk()
            try:
                bundle = load_model(self._dir)
            except Exception as exc:  # never a crash: a model that cannot load means fallbacks
                reason = str(exc) if isinstance(exc, ModelError) else f"{self._dir}: cannot load the model ({exc})"
                log.warning("duration model not loaded: %s", reason)
                with self._lock:
                    self.load_error = reason
                return False
            index = tuple({v: i for i, v in enumerate(bundle.metadata.vocabularies.get(name, []))}
                          for name in CATEGORICAL)
            with self._lock:
                previous = self._loaded
                self._loaded, self.load_error = _Loaded(bundle, index), None
        if previous is not None and previous.bundle.metadata.version != bundle.metadata.version:
            log.info("duration model %s replaced by %s", previous.bundle.metadata.version,
                     bundle.metadata.version)
        return True

    def _load_risk(self) -> None:
        try:
            risk = load_risk(self._dir)  # type: ignore[arg-type]
        except Exception as exc:  # a risk model that cannot load means unknown scores, never a crash
            reason = str(exc) if isinstance(exc, ModelError) else f"{self._dir}: cannot load the risk model ({exc})"
            log.warning("risk model not loaded: %s", reason)
            with self._lock:
                self.risk_error = reason
            return
        with self._lock:
            self._risk, self.risk_error = risk, None

    def risk(self, ask: RiskAsk, mine: Sequence[HistoryRow], on_resource: Sequence[HistoryRow]) -> RiskScore:
        """POLICY.md's `risk` for a request (recommend.risk) from the requester's past rows and anyone's
        on the resource; never raises: unknown, and why."""
        self._maybe_reload()
        return score_request(self._risk, self.risk_error, ask, mine, on_resource)

    def check_for_new_model(self) -> bool:
        """Reload if the model files changed since the last attempt; True if a reload ran."""
        if self._dir is None or self._files_now() == self._seen:
            return False
        self.reload()
        return True

    def _maybe_reload(self) -> None:
        if self._check_every is None or self._dir is None:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every  # racing threads may both stat: harmless
        if self._reload_lock.locked():
            return  # another thread is loading; keep serving what is loaded
        self.check_for_new_model()

    def recommend(self, req: RecommendRequest, max_duration: timedelta | None, step: timedelta,
                  history: Sequence[HistoryRow]) -> Recommendation:
        """A duration for `req`: the model's quantile calibrated to `coverage` at this step
        (recommend.calibrate), or per-resource/per-kind statistics when there is no model
        or it knows too little of the resource; rounded up to `step`, clamped to `max_duration`."""
        self._maybe_reload()
        ask = req.ask()
        loaded = self._loaded
        served = features_for(ask, history, loaded.bundle.words if loaded is not None else None)
        minutes, failure = math.nan, ""
        if loaded is not None and loaded.resource_rows(ask.resource) >= self._min_resource_rows:
            try:
                max_minutes = max_duration.total_seconds() / 60 if max_duration is not None else None
                scale = loaded.bundle.calibration.scale(self.coverage, step.total_seconds() / 60, max_minutes)
                minutes = float(scale.minutes(self._predict(loaded, served.raw)))
            except Exception as exc:  # a broken booster must not fail a request: fall back, say why
                log.warning("duration model failed, using fallback statistics: %s", exc)
                failure = "the model failed"
        if math.isfinite(minutes):
            basis = "model"
            why = "; ".join(p for p in (self._similar(loaded, ask), self._words(loaded, ask)) if p)  # type: ignore[arg-type]
        else:
            reason = failure or (f"the model knows too little of {ask.resource}" if loaded is not None
                                 else "no trained model")
            minutes, basis, stats_text = self._fallback(ask, history, loaded)
            why = f"fallback ({reason}): {stats_text}"
        duration = offer(minutes, max_duration, step)
        parts = [why, self._yours(ask, served)]
        if max_duration is not None and duration == max_duration and minutes * 60 > max_duration.total_seconds():
            parts.append(f"capped at the policy maximum of {format_minutes(max_duration.total_seconds() / 60)}")
        return Recommendation(
            duration=duration, minutes=math.ceil(duration.total_seconds() / 60 - 1e-9),
            explanation="; ".join(p for p in parts if p), fallback=basis != "model", basis=basis,
            model_version=loaded.bundle.metadata.version if loaded else None,
        )

    def _predict(self, loaded: _Loaded, raw: tuple) -> float:
        row = np.empty((1, len(FEATURES)), dtype=np.float64)
        for j, index in enumerate(loaded.index):
            row[0, j] = index.get(raw[j], math.nan)
        row[0, len(CATEGORICAL):] = raw[len(CATEGORICAL):]
        with self._lock:  # one predictor at a time: LightGBM predict state is per booster
            value = loaded.bundle.predict_minutes(row, num_threads=1)[0]
        return float(value)

    @staticmethod
    def _similar(loaded: _Loaded, ask: Ask) -> str:
        env = ask.labels.get("env", "")
        task = task_of(ask.reason, ask.ticket)
        keys = group_keys(ask.kind, env, task, ask.resource)
        stats = loaded.bundle.metadata.stats
        for section, what in (("kind_env_task", "other" if task == "other" else task), ("kind_env", "other")):
            found = stats.get(section, {}).get(keys[section])
            if found and found.n >= MIN_STAT_ROWS:
                words = "similar requests" if what == "other" else f"similar {what} requests"
                return f"{words}{_where(ask.kind, env)} used about {format_minutes(found.p50)}"
        return "recommended by the model"

    @staticmethod
    def _words(loaded: _Loaded, ask: Ask) -> str:
        """`the word "restore" (312 past grants) usually means about 2 h`: learned words that
        pull this offer away from the typical grant."""
        strong = loaded.bundle.words.strong_words(ask.reason, ask.ticket)
        if not strong:
            return ""
        parts = [
            f"{_word_label(e.word)} ({e.count} past grants) usually means about {format_minutes(e.typical_minutes)}"
            for e in strong
        ]
        return "learned: " + ", ".join(parts)

    def _fallback(self, ask: Ask, history: Sequence[HistoryRow], loaded: _Loaded | None) -> tuple[float, str, str]:
        env = ask.labels.get("env", "")
        past = [r for r in history if r.finished_at <= ask.at]
        on_resource = [r.used_minutes for r in past if r.resource == ask.resource]
        same_kind = [r.used_minutes for r in past if r.kind == ask.kind and r.labels.get("env", "") == env]
        saved = loaded.bundle.metadata.stats if loaded else {}
        keys = group_keys(ask.kind, env, "other", ask.resource)
        candidates = (
            ("resource", _live(on_resource), saved.get("resource", {}).get(keys["resource"]), f" on {ask.resource}"),
            ("kind", _live(same_kind), saved.get("kind_env", {}).get(keys["kind_env"]), _where(ask.kind, env)),
        )
        for basis, live, stored, label in candidates:
            for stats in (live, stored):
                if stats is not None and stats.n >= MIN_STAT_ROWS:
                    return (stats.p80, basis,
                            f"80% of {stats.n} past grants{label} used at most {format_minutes(stats.p80)}")
        return (
            DEFAULT_MINUTES,
            "default",
            f"no usable history for {ask.resource} or its kind, default {format_minutes(DEFAULT_MINUTES)}",
        )

    @staticmethod
    def _yours(ask: Ask, served: Served) -> str:
        """`your last 5 on orders-db used 35-50 min`, else the same for this task type elsewhere."""
        task = served.raw[0]
        recent = served.recent_on_resource[-5:]
        where = f"on {ask.resource}"
        if not recent and task != "other":
            recent, where = served.recent_same_task[-5:], f"{task} grants elsewhere"
        if not recent:
            return f"you have no finished grants on {ask.resource} yet"
        if len(recent) == 1:
            noun = "grant " + where if where.startswith("on ") else where.replace(" grants", " grant")
            return f"your last {noun} used {format_minutes(recent[0])}"
        return f"your last {len(recent)} {where} used {_span(min(recent), max(recent))}"


def _word_label(word: str) -> str:
    """`the word "restore"`, `ticket prefix SR`."""
    return f"ticket prefix {word.split(':', 1)[1]}" if word.startswith("ticket:") else f'the word "{word}"'


def _span(low: float, high: float) -> str:
    """`35-50 min`, `40 min`, `50 min to 2 h`."""
    a, b = format_minutes(low), format_minutes(high)
    if a == b:
        return a
    if a.endswith(" min") and b.endswith(" min") and " h" not in a + b:  # `1 h 30 min` is not plain minutes
        return f"{a.removesuffix(' min')}-{b}"
    return f"{a} to {b}"


def _live(values: list[float]) -> GroupStats | None:
    if not values:
        return None
    return GroupStats(len(values), quantile(values, 0.5), quantile(values, 0.8))


def _where(kind: str, env: str) -> str:
    """` on prod databases`, ` on hosts`."""
    noun = _KIND_NOUN.get(kind, f"{kind} resources")
    return f" on {env} {noun}" if env else f" on {noun}"
