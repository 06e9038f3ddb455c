"""Policy engine benchmark: indexed decide() vs evaluating every rule's CEL (naive).

Generates a realistic policy set (default 1,000 rules over 500 resources, 200
users in 20 teams), then measures decisions/s and p50/p99 latency of both
evaluators in the same run, on the same requests, and checks they agree.

    .venv/bin/python bench/policy_bench.py [--rules 1000 --resources 500 --requests 3000]
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from policy import PolicyRequest, PolicySet, load_policy_text

TEAMS = [f"t{i:02d}" for i in range(20)]
ENVS = ["dev", "dev", "staging", "prod", "prod"]


def generate(n_rules: int, n_resources: int, n_users: int, rng: random.Random) -> dict[str, Any]:
    users: dict[str, Any] = {}
    for i in range(n_users):
        team = TEAMS[i % len(TEAMS)]
        groups = [f"team-{team}"]
        if i % 7 == 0:
            groups.append("oncall")
        if i % 11 == 0:
            groups.append("sre")
        if i % 13 == 0:
            groups.append("contractor")
        if i % 17 == 0:
            groups.append("security")
        users[f"u{i:03d}"] = {"groups": groups, "attributes": {"region": rng.choice(["eu", "us"])}}
        if i >= len(TEAMS):
            users[f"u{i:03d}"]["manager"] = f"u{i % len(TEAMS):03d}"
    resources: dict[str, Any] = {}
    for i in range(n_resources):
        team = TEAMS[i % len(TEAMS)]
        labels = {"env": rng.choice(ENVS), "team": team, "sensitivity": rng.choice(["low", "medium", "high"]),
                  "region": rng.choice(["eu", "us"])}
        if i % 3:
            resources[f"host-{i:03d}"] = {"kind": "ssh", "address": f"10.0.{i // 250}.{i % 250}:22",
                                          "labels": labels, "logins": ["deploy", "root"],
                                          "owners": [f"group:team-{team}"]}
        else:
            resources[f"db-{i:03d}"] = {"kind": "postgres", "address": f"10.1.{i // 250}.{i % 250}:5432",
                                        "labels": labels, "roles": ["readonly", "readwrite"],
                                        "credentials": f"env:DB_{i}", "owners": [f"group:team-{team}"]}
    names = list(resources)
    rules: list[dict[str, Any]] = [
        {
            "name": "break-glass",
            "when": 'request.emergency && "oncall" in user.groups',
            "approval": "break_glass",
            "review": ["group:security"],
            "max_duration": "1h",
        },
        {
            "name": "after-hours-prod",
            "effect": "require",
            "when": 'resource.labels.env == "prod" && '
            '(now.getHours("Europe/Berlin") < 7 || now.getHours("Europe/Berlin") >= 19)',
            "approval": {"levels": [{"approvers": ["group:security"]}]},
        },
        {
            "name": "long-requests",
            "effect": "require",
            "when": 'request.duration > duration("4h")',
            "approval": {"levels": [{"approvers": ["manager"]}]},
        },
        {
            "name": "no-contractors-high",
            "effect": "deny",
            "when": '"contractor" in user.groups && resource.labels.sensitivity == "high"',
            "message": "contractors have no access to sensitive systems",
        },
        {
            "name": "repeat-offenders",
            "effect": "deny",
            "when": "history.revoked_90d >= 3",
            "message": "too many revocations",
        },
    ]
    for team in TEAMS:  # 20 teams x 3 envs
        rules.append(
            {
                "name": f"{team}-dev",
                "when": f'resource.labels.team == "{team}" && resource.labels.env == "dev"',
                "approval": "auto",
                "max_duration": "8h",
            }
        )
        rules.append(
            {
                "name": f"{team}-staging",
                "when": f'resource.labels.team == "{team}" && resource.labels.env == "staging" '
                f'&& "team-{team}" in user.groups',
                "approval": {"levels": [{"approvers": ["owner"]}]},
                "max_duration": "4h",
            }
        )
        rules.append(
            {
                "name": f"{team}-prod",
                "when": f'resource.labels.team == "{team}" && resource.labels.env == "prod"',
                "approval": {"levels": [{"approvers": ["manager", "owner"]}, {"approvers": ["group:security"]}]},
                "max_duration": "2h",
                "max_extensions": 1,
                "session": {"sftp": False, "port_forwarding": False},
            }
        )
        rules.append(
            {
                "name": f"{team}-staging-trusted",
                "when": f'resource.labels.team == "{team}" && resource.labels.env == "staging" '
                "&& history.granted_90d >= 10 && history.revoked_90d == 0",
                "approval": "auto",
            }
        )
        rules.append(
            {
                "name": f"{team}-region",
                "effect": "require",
                "when": f'resource.labels.team == "{team}" && resource.labels.region == "us" '
                '&& user.attributes.region != "us"',
                "approval": {"levels": [{"approvers": ["group:security"]}]},
            }
        )
    i = 0
    while len(rules) < n_rules:
        name = names[i % len(names)]
        res = resources[name]
        kind = res["kind"]
        variant = (i // len(names)) % 3
        if variant == 0 and kind == "ssh":
            rules.append({"name": f"{name}-root", "effect": "require",
                          "when": f'resource.name == "{name}" && request.login == "root"',
                          "max_duration": "30m", "session": {"port_forwarding": False}})
        elif variant == 0:
            rules.append({"name": f"{name}-writes", "effect": "require",
                          "when": f'resource.name == "{name}" && request.role == "readwrite"',
                          "approval": {"levels": [{"approvers": ["owner"]}]}, "max_duration": "1h"})
        elif variant == 1:
            user = f"u{rng.randrange(n_users):03d}"
            rules.append({"name": f"{name}-owner-{user}", "when": f'resource.name == "{name}" && user.name == "{user}"',
                          "approval": "auto", "max_duration": "4h"})
        else:
            rules.append(
                {
                    "name": f"{name}-ticket",
                    "effect": "require",
                    "when": f'resource.name == "{name}" && request.ticket == "" '
                    '&& resource.labels.sensitivity != "low"',
                    "approval": {"levels": [{"approvers": ["manager"]}]},
                }
            )
        i += 1
    return {"version": 1, "users": users, "resources": resources, "rules": rules[:n_rules]}


def make_requests(doc: dict[str, Any], n: int, rng: random.Random) -> list[PolicyRequest]:
    users = list(doc["users"])
    names = list(doc["resources"])
    start = datetime(2026, 11, 2, tzinfo=UTC)
    out = []
    for _ in range(n):
        name = rng.choice(names)
        res = doc["resources"][name]
        extra = {"login": rng.choice(res["logins"])} if res["kind"] == "ssh" else {"role": rng.choice(res["roles"])}
        out.append(PolicyRequest(
            user=rng.choice(users), resource=name, duration=timedelta(minutes=rng.choice([15, 30, 60, 120, 300])),
            time=start + timedelta(minutes=rng.randrange(7 * 24 * 60)), reason="work",
            ticket=rng.choice(["", "OPS-1"]), emergency=rng.random() < 0.05, extension=rng.choice([0, 0, 0, 1]),
            history={"granted_90d": rng.randrange(20), "revoked_90d": rng.choice([0, 0, 0, 1, 3]),
                     "median_minutes": float(rng.randrange(120))}, **extra))
    return out


def measure(fn: Any, reqs: list[PolicyRequest]) -> tuple[list[float], list[float], list[Any]]:
    """Wall-clock and CPU (this thread) latency of each call: on a shared machine the
    wall-clock tail includes time other processes held the CPU; the CPU figure does not."""
    lat, cpu, out = [], [], []
    for r in reqs:
        c = time.thread_time()
        t = time.perf_counter()
        out.append(fn(r))
        lat.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    return lat, cpu, out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--resources", type=int, default=500)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--requests", type=int, default=3000, help="requests for the indexed engine")
    ap.add_argument("--naive-requests", type=int, default=60, help="requests for the naive baseline (slow)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--gc-freeze", action=argparse.BooleanOptionalAction, default=True,
                    help="gc.freeze() after loading, as a long-running server would")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    doc = generate(args.rules, args.resources, args.users, rng)
    text = yaml.safe_dump(doc, sort_keys=False)
    t = time.perf_counter()
    ps: PolicySet = load_policy_text(text, "bench.yaml", run_tests=False)
    load_s = time.perf_counter() - t
    if args.gc_freeze:
        gc.collect()
        gc.freeze()  # the policy set lives for the process: keep its objects out of GC scans
    reqs = make_requests(doc, args.requests, rng)
    cands = [len(ps.candidate_rules(n)) for n in ps.resources]

    for r in reqs[:200]:  # warm-up (first CEL runs and caches)
        ps.decide(r)
    idx_lat, idx_cpu, idx_out = measure(ps.decide, reqs)
    naive_reqs = reqs[: args.naive_requests]
    naive_lat, naive_cpu, naive_out = measure(ps.naive_decide, naive_reqs)
    mismatches = sum(1 for a, b in zip(idx_out, naive_out, strict=False) if a.to_json() != b.to_json())
    allowed = sum(1 for d in idx_out if d.allowed)

    idx_rate = len(idx_lat) / sum(idx_lat)
    naive_rate = len(naive_lat) / sum(naive_lat)
    ms = 1000.0
    print(f"policy set: {len(ps.rules)} rules, {len(ps.resources)} resources, {len(ps.users)} users; "
          f"load+check+compile {load_s:.2f} s")
    print(f"index: {statistics.mean(cands):.1f} candidate rules per resource on average (max {max(cands)})")
    print(f"requests: {len(reqs)} indexed, {len(naive_reqs)} naive; {allowed / len(reqs):.0%} allowed")
    print()
    print(f"{'engine':<10}{'decisions/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
          f"{'cpu p50 ms':>12}{'cpu p99 ms':>12}")
    for name, rate, lat, cpu in (("indexed", idx_rate, idx_lat, idx_cpu), ("naive", naive_rate, naive_lat, naive_cpu)):
        print(f"{name:<10}{rate:>14,.1f}{pct(lat, .5) * ms:>10.3f}{pct(lat, .99) * ms:>10.3f}{max(lat) * ms:>10.3f}"
              f"{pct(cpu, .5) * ms:>12.3f}{pct(cpu, .99) * ms:>12.3f}")
    print()
    print(f"ratio: indexed is {idx_rate / naive_rate:,.0f}x the naive baseline's throughput; "
          f"p99 {pct(naive_lat, .99) / pct(idx_lat, .99):,.0f}x lower (cpu p99 "
          f"{pct(naive_cpu, .99) / pct(idx_cpu, .99):,.0f}x)")
    print(f"goal p99 < 2 ms: wall {'met' if pct(idx_lat, .99) < 0.002 else 'MISSED'}, "
          f"cpu {'met' if pct(idx_cpu, .99) < 0.002 else 'MISSED'}; "
          f"goal >= 50x naive: {'met' if idx_rate / naive_rate >= 50 else 'MISSED'}")
    print(f"indexed == naive on the {len(naive_reqs)} shared requests: "
          f"{'yes' if mismatches == 0 else f'NO, {mismatches} differ'}")


if __name__ == "__main__":
    main()
