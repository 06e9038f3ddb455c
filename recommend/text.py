"""Words an organisation uses for its work, learned from its own history.

Each reason is cut into words (and the ticket into its prefix, `ticket:SR` for
`SR-1234`); every word keeps a running count and sum of log1p(used minutes) of
the grants whose reason held it. A word's *estimate* is that mean shrunk toward
the mean of all grants (`SMOOTHING` pseudo-grants), so a word seen twice says
little and a word seen 400 times says a lot. The features are target statistics
out of fold in time: a row's features come only from grants that had finished
before it was asked, never from its own outcome.

The fixed keyword list (`recommend.tasks`) stays as a prior feature; these words
are what carries the model to a history whose vocabulary the list does not know.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SMOOTHING = 8.0  # pseudo-grants at the overall mean: a word needs about this many grants to speak
MAX_REASON_WORDS = 24  # words of one reason that count (a reason is a line, not an essay)
MAX_WORD_CHARS = 40  # longer "words" are identifiers or noise, not vocabulary
MAX_SAVED_WORDS = 20000  # words kept in a saved model (the most frequent): bounds the model file
MIN_SAVED_COUNT = 2  # a word seen once is not kept: it cannot generalise and bloats the file
MIN_WORK_COUNT = 20  # grants a word needs before it names a kind of work (personal statistics group by it)
MIN_WORK_DEVIATION = 0.1  # |log-estimate - overall| a word needs to name a kind of work (~10% longer/shorter)
_WORK_CACHE_SIZE = 50000  # reasons whose kind of work a frozen table remembers
STRONG_DEVIATION = 0.25  # |log-estimate - overall| above which a word is named in an explanation (~28%)
TEXT_FEATURES: tuple[str, ...] = ("text_lo", "text_hi", "text_word", "text_word_n", "text_ticket")

_WORD = re.compile(r"[a-z][a-z_]*[a-z]")  # letters (and _), at least two: numbers and versions are not words
_TICKET = re.compile(r"\b([A-Za-z]{1,12})-\d+")
_STOP = frozenset({"the", "for", "on", "of", "in", "to", "and", "a", "an", "at", "from", "with", "by", "is"})


@lru_cache(maxsize=16384)
def words_of(reason: str, ticket: str) -> tuple[str, ...]:
    """Distinct words of a reason (lowercased, in order) and `ticket:PREFIX` of the ticket (or of
    a ticket reference in the reason), at most MAX_REASON_WORDS + 1."""
    found: list[str] = []
    for word in _WORD.findall(_TICKET.sub(" ", reason).lower()):
        if word in _STOP or len(word) > MAX_WORD_CHARS or word in found:
            continue
        found.append(word)
        if len(found) >= MAX_REASON_WORDS:
            break
    match = _TICKET.search(ticket) or _TICKET.search(reason)
    if match:
        found.append(f"ticket:{match.group(1).upper()}")
    return tuple(found)


@dataclass(frozen=True)
class WordEstimate:
    """What the history says about one word: grants seen, shrunk mean of log1p(used)."""

    word: str
    count: int
    estimate: float
    overall: float

    @property
    def deviation(self) -> float:
        return self.estimate - self.overall

    @property
    def typical_minutes(self) -> float:
        return math.expm1(self.estimate)


class WordStats:
    """Running per-word statistics of used time (add grants in the order they finished)."""

    def __init__(
        self, counts: Mapping[str, tuple[int, float]] | None = None, total: tuple[int, float] = (0, 0.0)
    ) -> None:
        self._n: dict[str, int] = {w: n for w, (n, _) in (counts or {}).items()}
        self._sum: dict[str, float] = {w: s for w, (_, s) in (counts or {}).items()}
        self._total_n, self._total_sum = total
        self._work: dict[tuple[str, str], str] = {}
        self._expected: dict[tuple[str, str], float] = {}

    @property
    def overall(self) -> float:
        return self._total_sum / self._total_n if self._total_n else math.nan

    def add(self, reason: str, ticket: str, used_minutes: float) -> None:
        value = math.log1p(used_minutes)
        self._work.clear()
        self._expected.clear()
        self._total_n += 1
        self._total_sum += value
        for word in words_of(reason, ticket):
            self._n[word] = self._n.get(word, 0) + 1
            self._sum[word] = self._sum.get(word, 0.0) + value

    def estimates(self, reason: str, ticket: str) -> list[WordEstimate]:
        """Estimates of the known words of a reason/ticket (unknown words are left out)."""
        overall = self.overall
        if math.isnan(overall):
            return []
        prior = SMOOTHING * overall
        return [WordEstimate(w, self._n[w], self._shrunk(w, prior), overall)
                for w in words_of(reason, ticket) if self._n.get(w)]

    def shrunk_means(self, reason: str, ticket: str) -> list[float]:
        """`estimates`' values alone, in the same order (the risk score's hot path: no records built)."""
        overall = self.overall
        if math.isnan(overall):
            return []
        prior = SMOOTHING * overall
        return [self._shrunk(w, prior) for w in words_of(reason, ticket) if self._n.get(w)]

    def _shrunk(self, word: str, prior: float) -> float:
        """A known word's mean shrunk toward the overall one (`prior` = SMOOTHING * overall)."""
        return (self._sum[word] + prior) / (self._n[word] + SMOOTHING)

    def features(self, reason: str, ticket: str) -> tuple[float, float, float, float, float]:
        """TEXT_FEATURES: lowest and highest word estimate, the estimate and log count of the
        strongest word (farthest from the overall mean), the ticket prefix's estimate (nan: none)."""
        found = self.estimates(reason, ticket)
        words = [e for e in found if not e.word.startswith("ticket:")]
        ticket_est = next((e.estimate for e in found if e.word.startswith("ticket:")), math.nan)
        if not words:
            return math.nan, math.nan, math.nan, math.nan, ticket_est
        strongest = max(words, key=lambda e: abs(e.deviation))
        return (min(e.estimate for e in words), max(e.estimate for e in words), strongest.estimate,
                math.log1p(strongest.count), ticket_est)

    def expected(self, reason: str, ticket: str) -> float:
        """What the words of a reason predict, log1p(minutes): the strongest word's estimate, else the
        ticket prefix's, else the overall mean (nan before any grant). Cached, as work_of is."""
        key = (reason, ticket)
        found = self._expected.get(key)
        if found is None:
            _lo, _hi, word, _n, ticket_est = self.features(reason, ticket)
            found = word if word == word else ticket_est if ticket_est == ticket_est else self.overall
            if len(self._expected) >= _WORK_CACHE_SIZE:
                self._expected.clear()
            self._expected[key] = found
        return found

    def work_of(self, reason: str, ticket: str, prior: str) -> str:
        """The kind of work a reason names, as this history has learned it: its strongest word
        seen in at least MIN_WORK_COUNT grants (`word:restore`), else its ticket prefix
        (`ticket:SR`), else `prior` (the keyword list's task type)."""
        key = (reason, ticket)
        found = self._work.get(key)
        if found is not None:
            return found
        best: WordEstimate | None = None
        for e in self.estimates(reason, ticket):
            if e.count >= MIN_WORK_COUNT and abs(e.deviation) >= MIN_WORK_DEVIATION:
                is_ticket = e.word.startswith("ticket:")
                rank = (not is_ticket, abs(e.deviation))
                if best is None or rank > (not best.word.startswith("ticket:"), abs(best.deviation)):
                    best = e
        found = prior if best is None else (best.word if best.word.startswith("ticket:") else f"word:{best.word}")
        if len(self._work) >= _WORK_CACHE_SIZE:
            self._work.clear()
        self._work[key] = found
        return found

    def strong_words(self, reason: str, ticket: str, limit: int = 2) -> list[WordEstimate]:
        """The words of a reason/ticket that pull hardest away from the overall mean, strongest first."""
        found = [e for e in self.estimates(reason, ticket) if abs(e.deviation) >= STRONG_DEVIATION]
        return sorted(found, key=lambda e: -abs(e.deviation))[:limit]

    def to_json(self) -> dict[str, Any]:
        """The most frequent words (at most MAX_SAVED_WORDS, each seen MIN_SAVED_COUNT times)."""
        kept = sorted((w for w, n in self._n.items() if n >= MIN_SAVED_COUNT), key=lambda w: (-self._n[w], w))
        return {"total": [self._total_n, round(self._total_sum, 6)],
                "words": {w: [self._n[w], round(self._sum[w], 6)] for w in kept[:MAX_SAVED_WORDS]}}

    @classmethod
    def from_json(cls, obj: Any) -> WordStats:
        """Inverse of to_json; raises ValueError on a malformed table."""
        if not isinstance(obj, dict) or not isinstance(obj.get("words"), dict):
            raise ValueError("the word table must be a mapping with `words`")
        words = obj["words"]
        if len(words) > MAX_SAVED_WORDS:
            raise ValueError(f"the word table holds {len(words)} words, more than {MAX_SAVED_WORDS}")
        counts: dict[str, tuple[int, float]] = {}
        for word, pair in words.items():
            if not (isinstance(word, str) and isinstance(pair, list) and len(pair) == 2
                    and isinstance(pair[0], int) and pair[0] > 0 and isinstance(pair[1], (int, float))):
                raise ValueError(f"bad word entry {word!r}")
            counts[word] = (pair[0], float(pair[1]))
        total = obj.get("total")
        if not (isinstance(total, list) and len(total) == 2 and isinstance(total[0], int)
                and isinstance(total[1], (int, float))):
            raise ValueError("the word table's `total` must be [count, sum]")
        return cls(counts, (total[0], float(total[1])))


def learned_from(rows: Iterable[Any]) -> WordStats:
    """Word statistics over finished grants (HistoryRow-like: reason, ticket, used_minutes)."""
    stats = WordStats()
    for row in rows:
        stats.add(row.reason, row.ticket, row.used_minutes)
    return stats
