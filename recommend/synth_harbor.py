"""A second synthetic history with another organisation's story ("harbor"), so that
the recommender is measured on words and habits it was not written for.

Where `recommend.synth` tells of a web shop (deploys, migrations, reports; words the
built-in keyword list knows), this one tells of a logistics company whose people
work in their own words:

* **Resources.** Ledger, fleet and customs databases and a fleet of ETL, tracking
  and gateway hosts in environments called `live`, `preprod` and `lab`.
* **Tasks and their words.** rotate (keys and certificates, 12 min), purge
  (retention clean-ups, 25), onboard (a customer's data load, 35), tune (45),
  reconcile (ledger reconciliation, 65), leak (a security leak hunt, 80), replay
  (event replays, 110), restore (backup restores, 150) (medians). Most of these
  words are unknown to `recommend.tasks`, and some reasons carry words the
  keyword list maps to the wrong task ("purge old logs" reads as debugging,
  "restore after outage" as an incident).
* **Tickets.** `SR-`, `HD-`, `GDPR-`, `SEC-` and `JIRA-` prefixes, each used for
  several tasks (no prefix names one task).
* **Pace.** People differ more (personal speed spread 0.45 vs 0.30), and a third
  of the organisation works a night shift (starting 19-23 h) and weekends.
* **Environment.** live work is quick (x0.8), preprod x1.1, lab x1.6.
* **Noise.** Wider noise per session (log-normal sigma 0.45-0.65 vs 0.35-0.6), 4% of sessions go wrong (2.5-8x),
  6% are a peek of 1-6 min, 20% of reasons are vague.
* **Asks and extensions** as in `recommend.synth`, with caps live 3h, preprod 6h,
  lab 10h, and asks rounded to 20 min.

Deterministic: the same (rows, seed, start) give the same rows, in time order.
`generate_with_tasks` also returns each row's true task (for evaluations only).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from recommend.history import HistoryRow

TASK_MEDIAN_MIN = {"rotate": 12.0, "purge": 25.0, "onboard": 35.0, "tune": 45.0, "reconcile": 65.0,
                   "leak": 80.0, "replay": 110.0, "restore": 150.0}
TASK_SPREAD = {"rotate": 0.35, "purge": 0.40, "onboard": 0.40, "tune": 0.45, "reconcile": 0.40,
               "leak": 0.55, "replay": 0.45, "restore": 0.45}
URGENT_TASKS = frozenset({"leak", "restore"})  # the tasks this organisation treats as incidents
ENV_FACTOR = {"live": 0.8, "preprod": 1.1, "lab": 1.6}
ENV_MAX_MIN = {"live": 180, "preprod": 360, "lab": 600}
NOISE_EXTRA = 0.1
OUTLIER_SHARE, OUTLIER_RANGE = 0.04, (2.5, 8.0)
PEEK_SHARE, PEEK_RANGE_MIN = 0.06, (1.0, 6.0)
VAGUE_SHARE = 0.20
NIGHT_SHIFT_SHARE = 0.33
MAX_EXTENSIONS = 2
ASK_UNIT_MIN = 20.0
DEFAULT_START = datetime(2025, 3, 1, tzinfo=UTC)
SPAN_DAYS = 300

_KIND_TASKS = {
    "ssh": {"rotate": 0.25, "purge": 0.15, "tune": 0.20, "leak": 0.12, "replay": 0.18, "restore": 0.05,
            "onboard": 0.05},
    "postgres": {"reconcile": 0.22, "onboard": 0.18, "purge": 0.14, "restore": 0.12, "tune": 0.12,
                 "rotate": 0.08, "leak": 0.06, "replay": 0.08},
}
_REASONS = {
    "rotate": ["rotate {thing} keys", "rotate tls cert on {thing}", "key rotation {thing}", "swap {thing} secret"],
    "purge": ["purge {thing} older than 90d", "purge old logs on {thing}", "retention purge {thing}",
              "gdpr erase request {n}"],
    "onboard": ["onboard {customer}", "load {customer} manifests", "onboarding data for {customer}",
                "initial import for {customer}"],
    "tune": ["tune {thing} workers", "vacuum tuning {thing}", "tune batch size for {thing}", "perf pass on {thing}"],
    "reconcile": ["reconcile ledger {month}", "ledger reconciliation {month}", "reconcile {customer} invoices",
                  "month end close {month}"],
    "leak": ["leak hunt {thing}", "possible credential leak {thing}", "exfil check on {thing}",
             "leak triage {n}"],
    "replay": ["replay {thing} events", "replay dead letters {thing}", "reprocess {thing} backlog",
               "event replay from {month}"],
    "restore": ["restore {thing} from backup", "restore after outage {thing}", "point in time restore {thing}",
                "pitr {thing}"],
}
_VAGUE = ["per chat", "as agreed", "routine", "ops", "small thing", "followup", "ticket"]
_TICKETS = {"rotate": ("SEC", "SR"), "purge": ("GDPR", "HD"), "onboard": ("SR", "JIRA"), "tune": ("JIRA", "HD"),
            "reconcile": ("JIRA", "SR"), "leak": ("SEC", "HD"), "replay": ("JIRA", "SR"),
            "restore": ("HD", "SR")}
_TICKET_SHARE = 0.55
_THINGS = ["tracking", "fleet", "customs", "billing", "gateway", "manifests", "telemetry", "routing", "depot"]
_CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_NAMES = ["ana", "bram", "chen", "dara", "emil", "fay", "gus", "hana", "ines", "jon", "kai", "lior", "mira",
          "nils", "odo", "pia", "raf", "sina", "tove", "ugo", "vera", "wim", "xia", "yusuf", "zena"]


@dataclass(frozen=True)
class _Resource:
    name: str
    kind: str
    env: str
    size: float


@dataclass(frozen=True)
class _Person:
    name: str
    homes: tuple[_Resource, ...]
    home_weights: tuple[float, ...]
    start_hour: float
    works_weekends: bool
    speed: float
    task_habit: dict[str, float]
    task_mix: dict[str, float]
    generosity: float
    activity: float


def _resources(rng: random.Random) -> list[_Resource]:
    specs = [("ledger-db", "postgres", "live"), ("fleet-db", "postgres", "live"), ("customs-db", "postgres", "live"),
             ("telemetry-db", "postgres", "live"), ("ledger-db-pp", "postgres", "preprod"),
             ("fleet-db-pp", "postgres", "preprod"), ("scratch-db", "postgres", "lab"),
             ("etl-live-1", "ssh", "live"), ("etl-live-2", "ssh", "live"), ("track-live-1", "ssh", "live"),
             ("track-live-2", "ssh", "live"), ("gw-live-1", "ssh", "live"), ("etl-pp-1", "ssh", "preprod"),
             ("track-pp-1", "ssh", "preprod"), ("gw-pp-1", "ssh", "preprod"), ("lab-box-1", "ssh", "lab"),
             ("lab-box-2", "ssh", "lab")]
    return [_Resource(n, k, e, rng.lognormvariate(0.0, 0.3)) for n, k, e in specs]


def _people(rng: random.Random, count: int, resources: list[_Resource]) -> list[_Person]:
    people = []
    for i in range(count):
        name = f"{_NAMES[i % len(_NAMES)]}{'' if i < len(_NAMES) else i // len(_NAMES)}"
        homes = tuple(rng.sample(resources, rng.randint(2, 6)))
        night = rng.random() < NIGHT_SHIFT_SHARE
        people.append(_Person(
            name=name, homes=homes, home_weights=tuple(rng.lognormvariate(0.0, 1.0) for _ in homes),
            start_hour=rng.uniform(19.0, 23.0) if night else rng.uniform(6.0, 11.0),
            works_weekends=night or rng.random() < 0.2, speed=rng.lognormvariate(0.0, 0.45),
            task_habit={t: rng.lognormvariate(0.0, 0.3) for t in TASK_MEDIAN_MIN},
            task_mix={t: rng.lognormvariate(0.0, 1.0) for t in TASK_MEDIAN_MIN},
            generosity=rng.uniform(1.1, 3.0), activity=rng.lognormvariate(0.0, 0.8)))
    return people


def _when(rng: random.Random, person: _Person, task: str, start: datetime, span_days: int) -> datetime:
    day = start + timedelta(days=rng.randrange(span_days))
    if task in URGENT_TASKS and rng.random() < 0.4:
        return (day + timedelta(hours=rng.uniform(0.0, 24.0))).replace(microsecond=0)
    while day.weekday() >= 5 and not person.works_weekends:
        day += timedelta(days=1)
    hour = person.start_hour + rng.uniform(0.0, 9.0)
    return (day + timedelta(hours=hour)).replace(microsecond=0)


def _reason(rng: random.Random, task: str) -> tuple[str, str]:
    if rng.random() < VAGUE_SHARE:
        reason = rng.choice(_VAGUE)
    else:
        reason = rng.choice(_REASONS[task]).format(
            thing=rng.choice(_THINGS), customer=rng.choice(_CUSTOMERS), month=rng.choice(_MONTHS),
            n=rng.randrange(10, 9999))
    ticket = f"{rng.choice(_TICKETS[task])}-{rng.randint(10, 99999)}" if rng.random() < _TICKET_SHARE else ""
    return reason, ticket


def _access(rng: random.Random, kind: str, task: str) -> tuple[str | None, str | None]:
    if kind == "postgres":
        if task in ("reconcile", "leak") and rng.random() < 0.7:
            return None, "auditor"
        return None, ("owner" if task in ("restore", "purge") else "writer")
    return ("root" if task in ("rotate", "leak", "restore") and rng.random() < 0.6 else "ops"), None


def generate_with_tasks(rows: int, seed: int = 0, start: datetime = DEFAULT_START,
                        span_days: int = SPAN_DAYS) -> list[tuple[HistoryRow, str]]:
    """`rows` grants in time order, each with its true task (which the rows do not carry)."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if span_days < 1:
        raise ValueError("span_days must be >= 1")
    rng = random.Random(seed)
    resources = _resources(rng)
    cast = _people(rng, max(10, min(120, rows // 350)), resources)
    drafts = []
    for _ in range(rows):
        person = rng.choices(cast, weights=[p.activity for p in cast])[0]
        resource = rng.choices(person.homes, weights=person.home_weights)[0]
        tasks = list(_KIND_TASKS[resource.kind])
        task = rng.choices(tasks, weights=[_KIND_TASKS[resource.kind][t] * person.task_mix[t] for t in tasks])[0]
        drafts.append((_when(rng, person, task, start, span_days), rng.random(), person, resource, task))
    drafts.sort(key=lambda d: (d[0], d[1]))
    out = []
    for when, _, person, resource, task in drafts:
        login, role = _access(rng, resource.kind, task)
        night = when.hour < 6 or when.hour >= 22
        typical = (TASK_MEDIAN_MIN[task] * ENV_FACTOR[resource.env] * resource.size * person.speed
                   * person.task_habit[task] * (0.8 if role == "auditor" else 1.0) * (1.2 if night else 1.0))
        need = typical * rng.lognormvariate(0.0, TASK_SPREAD[task] + NOISE_EXTRA)
        luck = rng.random()
        if luck < OUTLIER_SHARE:
            need *= rng.uniform(*OUTLIER_RANGE)
        elif luck < OUTLIER_SHARE + PEEK_SHARE:
            need = rng.uniform(*PEEK_RANGE_MIN)
        guess = typical * person.generosity
        asked = float(min(ENV_MAX_MIN[resource.env], max(ASK_UNIT_MIN, math.ceil(guess / ASK_UNIT_MIN) * ASK_UNIT_MIN)))
        extensions = min(MAX_EXTENSIONS, max(0, math.ceil(need / asked) - 1))
        used = round(min(need, asked * (1 + MAX_EXTENSIONS)), 1)
        reason, ticket = _reason(rng, task)
        out.append((HistoryRow(
            user=person.name, resource=resource.name, kind=resource.kind,
            labels={"env": resource.env, "tier": "gold" if resource.env == "live" else "bronze"},
            login=login, role=role, reason=reason, ticket=ticket, requested_at=when,
            asked_minutes=asked, used_minutes=max(used, 0.5), extensions=extensions,
            emergency=task in URGENT_TASKS and (night or when.weekday() >= 5)), task))
    return out


def generate(rows: int, seed: int = 0, start: datetime = DEFAULT_START,
             span_days: int = SPAN_DAYS) -> list[HistoryRow]:
    """`rows` synthetic grants of the harbor story, in time order."""
    return [row for row, _ in generate_with_tasks(rows, seed, start, span_days)]
