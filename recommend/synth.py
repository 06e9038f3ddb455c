"""A synthetic but plausible history of grants, for demos, tests and the benchmark.

The generative story (every number below is a constant in this file):

* **Resources.** About 30 SSH hosts and PostgreSQL databases in `prod`,
  `staging` and `dev`, each with a sensitivity label and a fixed "size" factor
  (a big database makes every task on it a bit longer).
* **People with habits.** Each person has an archetype (SRE, DBA, developer,
  analyst, support) that sets which tasks they do and which kinds of resource
  they touch, a handful of home resources they return to, working hours, a
  personal speed factor, a personal factor per task type ("Dana's migrations
  always run long"), and an asking habit (how generously they round their ask).
* **Tasks with typical lengths.** Report 25 min, config change 20, deploy 35,
  debugging 55, migration 90, incident 70, other 40 (medians), each with its own
  spread; the reason text (and often a ticket) says which task it is, except for
  about 1 in 8 vague reasons ("quick check", "as discussed").
* **Environment.** Work in prod is focused and shorter (x0.75) than in staging
  (x1.15) and dev (x1.35), where people linger. Read-only roles are quicker.
* **Time.** Normal work happens on weekdays within the person's hours; a
  third of incidents happen after hours or at weekends and those run 30% longer.
  People get somewhat faster on a resource they have worked on many times.
* **Noise and outliers.** Log-normal noise per session; 2% of sessions go wrong
  and take 3-6x longer; 3% are a quick peek of a few minutes.
* **Asks and extensions.** People ask their own rough estimate times their
  habit, rounded up to 30 min (or 15 under an hour) and capped by the
  environment's maximum (prod 2h, staging 4h, dev 8h). When the work needs
  more, they extend (each extension adds the asked length, at most 2); work
  that needs more than that is cut at the end of the last extension.

Deterministic: the same (rows, seed, start) give the same rows, in time order.

`generate(..., resources=[ResourceSpec...], people=[PersonSpec...])` tells the same
story about a given set of resources and people instead of the built-in ones
(the demo uses the example policies' resources and users).
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from recommend.history import HistoryRow

TASK_MEDIAN_MIN = {"report": 25.0, "config change": 20.0, "deploy": 35.0, "debugging": 55.0,
                   "migration": 90.0, "incident": 70.0, "other": 40.0}
TASK_SPREAD = {"report": 0.35, "config change": 0.40, "deploy": 0.35, "debugging": 0.50,
               "migration": 0.40, "incident": 0.55, "other": 0.60}
ENV_FACTOR = {"prod": 0.75, "staging": 1.15, "dev": 1.35}
ENV_MAX_MIN = {"prod": 120, "staging": 240, "dev": 480}
AFTER_HOURS_INCIDENT_FACTOR = 1.3
OUTLIER_SHARE, OUTLIER_RANGE = 0.02, (3.0, 6.0)
PEEK_SHARE, PEEK_RANGE_MIN = 0.03, (1.0, 8.0)
VAGUE_SHARE = 0.12
MAX_EXTENSIONS = 2
DEFAULT_START = datetime(2025, 11, 1, tzinfo=UTC)
SPAN_DAYS = 365

# kind -> task -> how common that task is on that kind of resource
_KIND_TASKS = {
    "ssh": {"deploy": 0.28, "config change": 0.20, "debugging": 0.25, "incident": 0.08,
            "other": 0.12, "report": 0.02, "migration": 0.05},
    "postgres": {"report": 0.30, "migration": 0.15, "debugging": 0.20, "config change": 0.10,
                 "incident": 0.07, "deploy": 0.03, "other": 0.15},
}
# archetype -> (share of postgres resources among home resources, task preference multipliers)
_ARCHETYPES = {
    "sre": (0.25, {"deploy": 1.5, "incident": 2.0, "config change": 1.5, "report": 0.3}),
    "dba": (0.85, {"migration": 2.0, "config change": 1.5, "debugging": 1.2, "deploy": 0.3}),
    "developer": (0.45, {"deploy": 1.5, "debugging": 1.5, "migration": 1.2, "incident": 0.6}),
    "analyst": (0.95, {"report": 3.0, "other": 1.2, "migration": 0.1, "deploy": 0.1, "incident": 0.2}),
    "support": (0.50, {"debugging": 2.0, "report": 1.5, "incident": 1.0, "migration": 0.2}),
}
_ARCHETYPE_WEIGHTS = {"sre": 0.25, "dba": 0.12, "developer": 0.38, "analyst": 0.12, "support": 0.13}

_REASONS = {
    "migration": ["run schema migration for {feature}", "apply migration {n:04d}", "alembic upgrade for {feature}",
                  "backfill {table} after schema change", "add index on {table}"],
    "deploy": ["deploy release {v}", "rollout of {feature} {v}", "hotfix deploy for {feature}",
               "roll back {v}", "ship {feature} {v}"],
    "config change": ["update config for {feature}", "change connection pool setting", "rotate {feature} credentials",
                      "tune autovacuum parameters", "toggle feature flag {feature}", "fix cron schedule"],
    "incident": ["incident: {feature} latency", "pager alert: disk almost full", "outage in {feature}",
                 "alert on {table} replication lag", "on-call: {feature} errors spiking"],
    "debugging": ["debug failing {feature} job", "investigate slow query on {table}", "troubleshoot {feature} timeouts",
                  "look into {feature} errors", "diagnose memory growth in {feature}"],
    "report": ["monthly {feature} report", "export {table} for finance", "audit query for compliance",
               "numbers for the {feature} dashboard", "data pull for {feature} analytics"],
    "other": ["clean up temp files", "help a colleague with {feature}", "review {table} contents",
              "housekeeping on {feature}", "check disk usage"],
}
_VAGUE = ["quick check", "as discussed", "maintenance", "ops work", "follow-up", "fix", "see slack"]
_TICKET = {"incident": ("INC", 0.8), "deploy": ("REL", 0.5), "config change": ("CHG", 0.6),
           "migration": ("CHG", 0.6), "debugging": ("BUG", 0.4), "report": ("RPT", 0.3), "other": ("OPS", 0.2)}
_FEATURES = ["checkout", "billing", "search", "login", "invoices", "shipping", "catalog", "refunds", "notifications"]
_TABLES = ["orders", "payments", "users", "events", "invoices", "sessions", "line_items"]
_FIRST = ["alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi", "ivan", "judy", "ken", "lena",
          "mallory", "nina", "oscar", "peggy", "quinn", "rupert", "sybil", "trent", "uma", "victor", "wendy",
          "xavier", "yara", "zoe"]


@dataclass(frozen=True)
class ResourceSpec:
    """A resource to generate history for. `labels` are written as they are (use the
    policy's); its `env` label picks the environment story (other values: staging).
    `logins`/`roles`, when given, are the only ones used."""

    name: str
    kind: str  # "ssh" or "postgres"
    labels: Mapping[str, str] = field(default_factory=dict)
    logins: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class PersonSpec:
    """A person to generate history for: an archetype (sre, dba, developer, analyst,
    support; None: drawn at random) and the resources they may use (None: any)."""

    name: str
    archetype: str | None = None
    resources: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Resource:
    name: str
    kind: str
    env: str
    sensitivity: str
    size: float
    labels: Mapping[str, str] | None = None  # None: env and sensitivity
    logins: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Person:
    name: str
    archetype: str
    homes: tuple[_Resource, ...]
    home_weights: tuple[float, ...]
    start_hour: float
    speed: float
    task_habit: dict[str, float]
    generosity: float
    activity: float


def _resources(rng: random.Random) -> list[_Resource]:
    specs = [
        ("orders-db", "postgres", "prod", "high"), ("payments-db", "postgres", "prod", "high"),
        ("users-db", "postgres", "prod", "high"), ("analytics-replica", "postgres", "prod", "medium"),
        ("events-db", "postgres", "prod", "medium"),
        ("orders-db-staging", "postgres", "staging", "low"), ("payments-db-staging", "postgres", "staging", "medium"),
        ("users-db-staging", "postgres", "staging", "low"), ("dev-db", "postgres", "dev", "low"),
        ("sandbox-db", "postgres", "dev", "low"),
        ("web-prod-01", "ssh", "prod", "medium"), ("web-prod-02", "ssh", "prod", "medium"),
        ("web-prod-03", "ssh", "prod", "medium"), ("api-prod-01", "ssh", "prod", "high"),
        ("api-prod-02", "ssh", "prod", "high"), ("batch-prod-01", "ssh", "prod", "medium"),
        ("bastion-prod", "ssh", "prod", "high"),
        ("web-staging-01", "ssh", "staging", "low"), ("web-staging-02", "ssh", "staging", "low"),
        ("api-staging-01", "ssh", "staging", "low"), ("batch-staging-01", "ssh", "staging", "low"),
        ("web-dev-01", "ssh", "dev", "low"), ("web-dev-02", "ssh", "dev", "low"),
        ("api-dev-01", "ssh", "dev", "low"), ("sandbox-01", "ssh", "dev", "low"),
    ]
    return [_Resource(n, k, e, s, rng.lognormvariate(0.0, 0.2)) for n, k, e, s in specs]


def _people(rng: random.Random, count: int, resources: list[_Resource]) -> list[_Person]:
    by_kind = {kind: [r for r in resources if r.kind == kind] for kind in ("ssh", "postgres")}
    names = [f"{first}{'' if i < len(_FIRST) else i // len(_FIRST)}"
             for i, first in ((i, _FIRST[i % len(_FIRST)]) for i in range(count))]
    archetypes = list(_ARCHETYPE_WEIGHTS)
    people = []
    for name in names:
        archetype = rng.choices(archetypes, weights=[_ARCHETYPE_WEIGHTS[a] for a in archetypes])[0]
        pg_share = _ARCHETYPES[archetype][0]
        homes: list[_Resource] = []
        for _ in range(rng.randint(3, 7)):
            pool = by_kind["postgres" if rng.random() < pg_share else "ssh"] or resources
            choice = rng.choice(pool)
            if choice not in homes:
                homes.append(choice)
        people.append(_Person(
            name=name,
            archetype=archetype,
            homes=tuple(homes),
            home_weights=tuple(rng.lognormvariate(0.0, 0.8) for _ in homes),
            start_hour=rng.uniform(7.0, 10.5),
            speed=rng.lognormvariate(0.0, 0.30),
            task_habit={task: rng.lognormvariate(0.0, 0.25) for task in TASK_MEDIAN_MIN},
            generosity=rng.uniform(1.0, 2.5),
            activity=rng.lognormvariate(0.0, 0.6),
        ))
    return people


def _spec_resources(rng: random.Random, specs: Sequence[ResourceSpec]) -> list[_Resource]:
    out = []
    for spec in specs:
        if spec.kind not in _KIND_TASKS:
            raise ValueError(f"resource `{spec.name}`: kind must be ssh or postgres, got `{spec.kind}`")
        env = spec.labels.get("env", "")
        out.append(_Resource(spec.name, spec.kind, env if env in ENV_FACTOR else "staging",
                             spec.labels.get("sensitivity", ""), rng.lognormvariate(0.0, 0.2),
                             dict(spec.labels), tuple(spec.logins), tuple(spec.roles)))
    return out


def _spec_people(rng: random.Random, specs: Sequence[PersonSpec], resources: list[_Resource]) -> list[_Person]:
    archetypes = list(_ARCHETYPE_WEIGHTS)
    people = []
    for spec in specs:
        archetype = spec.archetype or rng.choices(archetypes, weights=[_ARCHETYPE_WEIGHTS[a] for a in archetypes])[0]
        if archetype not in _ARCHETYPES:
            raise ValueError(f"person `{spec.name}`: unknown archetype `{archetype}` (known: {', '.join(archetypes)})")
        allowed = [r for r in resources if spec.resources is None or r.name in spec.resources]
        if not allowed:
            continue  # nothing this person may use: no history
        pg_share = _ARCHETYPES[archetype][0]
        weights = tuple(rng.lognormvariate(0.0, 0.8) * (pg_share if r.kind == "postgres" else 1.0 - pg_share)
                        + 1e-3 for r in allowed)
        people.append(_Person(
            name=spec.name, archetype=archetype, homes=tuple(allowed), home_weights=weights,
            start_hour=rng.uniform(7.0, 10.5), speed=rng.lognormvariate(0.0, 0.30),
            task_habit={task: rng.lognormvariate(0.0, 0.25) for task in TASK_MEDIAN_MIN},
            generosity=rng.uniform(1.0, 2.5), activity=rng.lognormvariate(0.0, 0.6),
        ))
    if not people:
        raise ValueError("no person may use any of the resources: nothing to generate")
    return people


def _allowed_access(rng: random.Random, resource: _Resource, login: str | None,
                    role: str | None) -> tuple[str | None, str | None]:
    """The drawn login/role, or one the resource has when it names its own."""
    if login is not None and resource.logins and login not in resource.logins:
        plain = [name for name in resource.logins if name != "root"] or list(resource.logins)
        login = "root" if login == "root" and "root" in resource.logins else rng.choice(plain)
    if role is not None and resource.roles and role not in resource.roles:
        if role != "readonly" and "readwrite" in resource.roles:
            role = "readwrite"
        else:
            reads = [name for name in resource.roles if "read" in name and "write" not in name]
            role = reads[0] if reads and role == "readonly" else rng.choice(list(resource.roles))
    return login, role


def _pick_task(rng: random.Random, person: _Person, kind: str) -> str:
    prefs = _ARCHETYPES[person.archetype][1]
    tasks = list(_KIND_TASKS[kind])
    return rng.choices(tasks, weights=[_KIND_TASKS[kind][t] * prefs.get(t, 1.0) for t in tasks])[0]


def _access(rng: random.Random, kind: str, task: str) -> tuple[str | None, str | None]:
    if kind == "postgres":
        if task == "report" or (task in ("debugging", "other", "incident") and rng.random() < 0.6):
            return None, "readonly"
        return None, ("admin" if task == "migration" and rng.random() < 0.5 else "readwrite")
    if task in ("incident", "config change") and rng.random() < 0.5:
        return "root", None
    return ("deploy" if task in ("deploy", "migration") or rng.random() < 0.5 else "app"), None


def _when(rng: random.Random, person: _Person, task: str, start: datetime,
          span_days: int = SPAN_DAYS) -> tuple[datetime, bool]:
    """A request time; True when it is after hours (before 7, from 19, or a weekend)."""
    day = start + timedelta(days=rng.randrange(span_days))
    if task == "incident" and rng.random() < 0.33:
        moment = day + timedelta(hours=rng.uniform(0.0, 24.0))
    else:
        while day.weekday() >= 5:
            day += timedelta(days=1)
        late = rng.random() < 0.05
        hour = person.start_hour + (rng.uniform(8.5, 11.0) if late else rng.uniform(0.0, 8.5))
        moment = day + timedelta(hours=hour)
    moment = moment.replace(microsecond=0)
    after = moment.weekday() >= 5 or moment.hour < 7 or moment.hour >= 19
    return moment, after


def _reason(rng: random.Random, task: str) -> tuple[str, str]:
    if rng.random() < VAGUE_SHARE:
        reason = rng.choice(_VAGUE)
    else:
        reason = rng.choice(_REASONS[task]).format(
            feature=rng.choice(_FEATURES), table=rng.choice(_TABLES), n=rng.randrange(1, 300),
            v=f"{rng.randint(1, 4)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}")
    prefix, share = _TICKET[task]
    ticket = f"{prefix}-{rng.randint(100, 9999)}" if rng.random() < share else ""
    return reason, ticket


def _ask(person: _Person, typical: float, env: str) -> float:
    guess = typical * person.generosity
    unit = 15.0 if guess <= 60 else 30.0
    return float(min(ENV_MAX_MIN[env], max(unit, math.ceil(guess / unit) * unit)))


def generate(rows: int, seed: int = 0, start: datetime = DEFAULT_START, *,
             resources: Sequence[ResourceSpec] | None = None, people: Sequence[PersonSpec] | None = None,
             span_days: int = SPAN_DAYS) -> list[HistoryRow]:
    """`rows` synthetic grants over `span_days` (one year) from `start`, in time order,
    about the built-in resources and people or the given ones."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    if span_days < 1:
        raise ValueError("span_days must be >= 1")
    rng = random.Random(seed)
    if resources is None:
        resource_list = _resources(rng)
    elif resources:
        resource_list = _spec_resources(rng, resources)
    else:
        raise ValueError("no resources to generate history for")
    cast = (_people(rng, max(12, min(150, rows // 300)), resource_list) if people is None
            else _spec_people(rng, people, resource_list))
    weights = [p.activity for p in cast]
    drafts = []
    for _ in range(rows):
        person = rng.choices(cast, weights=weights)[0]
        resource = rng.choices(person.homes, weights=person.home_weights)[0]
        task = _pick_task(rng, person, resource.kind)
        when, after_hours = _when(rng, person, task, start, span_days)
        drafts.append((when, person, resource, task, after_hours, rng.random()))
    drafts.sort(key=lambda d: (d[0], d[5]))
    seen: dict[tuple[str, str], int] = {}
    out = []
    for when, person, resource, task, after_hours, _ in drafts:
        login, role = _access(rng, resource.kind, task)
        if resource.logins or resource.roles:
            login, role = _allowed_access(rng, resource, login, role)
        repeats = seen.get((person.name, resource.name), 0)
        seen[(person.name, resource.name)] = repeats + 1
        typical = (TASK_MEDIAN_MIN[task] * ENV_FACTOR[resource.env] * resource.size * person.speed
                   * person.task_habit[task] * (0.85 if role == "readonly" else 1.0)
                   * (AFTER_HOURS_INCIDENT_FACTOR if task == "incident" and after_hours else 1.0))
        learning = 0.9 + 0.3 * math.exp(-repeats / 5.0)  # newcomers to a resource are slower
        need = typical * learning * rng.lognormvariate(0.0, TASK_SPREAD[task])
        luck = rng.random()
        if luck < OUTLIER_SHARE:
            need *= rng.uniform(*OUTLIER_RANGE)
        elif luck < OUTLIER_SHARE + PEEK_SHARE:
            need = rng.uniform(*PEEK_RANGE_MIN)
        asked = _ask(person, typical, resource.env)
        extensions = min(MAX_EXTENSIONS, max(0, math.ceil(need / asked) - 1))
        used = round(min(need, asked * (1 + MAX_EXTENSIONS)), 1)
        reason, ticket = _reason(rng, task)
        out.append(HistoryRow(
            user=person.name, resource=resource.name, kind=resource.kind,
            labels=dict(resource.labels) if resource.labels is not None
            else {"env": resource.env, "sensitivity": resource.sensitivity},
            login=login, role=role, reason=reason, ticket=ticket, requested_at=when,
            asked_minutes=asked, used_minutes=max(used, 0.5), extensions=extensions,
            emergency=task == "incident" and after_hours))  # after-hours incidents go through break-glass
    return out
