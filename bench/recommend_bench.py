"""Duration recommender: model vs baselines on held-out history, training time,
serving latency.

    .venv/bin/python bench/recommend_bench.py                 # 50,000 synthetic grants
    .venv/bin/python bench/recommend_bench.py --history FILE  # any history (JSON lines)

Time-based split: train on the older 80%, measure on the newest 20%. Goal: at
coverage >= 80%, the model's excess minutes at least 30% below the best
baseline's among those with the same or higher coverage.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from bisect import bisect_left
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recommend.durations import parse_duration  # noqa: E402
from recommend.evaluate import BASELINES, Evaluation, baseline_predictions, score  # noqa: E402
from recommend.features import encode, make_vocabularies  # noqa: E402
from recommend.history import HistoryRow, read_history  # noqa: E402
from recommend.model import TrainParams, pinball_loss, save_model, train_booster  # noqa: E402
from recommend.rounding import offer_minutes  # noqa: E402
from recommend.serve import RecommendRequest, Recommender  # noqa: E402
from recommend.synth import generate  # noqa: E402
from recommend.training import fit, prepare  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="synthetic grants (ignored with --history)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history", type=Path, help="history file instead of synthetic grants")
    parser.add_argument("--max", default="8h", help="policy maximum (clamp, and the fixed_max baseline)")
    parser.add_argument("--step", default="15m", help="rounding step")
    parser.add_argument("--alpha", type=float, default=0.8)
    parser.add_argument("--calls", type=int, default=3000, help="serving calls to time")
    parser.add_argument("--recent", type=int, default=200, help="past grants of the requester passed per call")
    args = parser.parse_args()
    max_minutes = parse_duration(args.max).total_seconds() / 60
    step_minutes = parse_duration(args.step).total_seconds() / 60

    started = time.perf_counter()
    rows = read_history(args.history) if args.history else generate(args.rows, args.seed)
    source = str(args.history) if args.history else f"synthetic, {args.rows} grants, seed {args.seed}"
    load_s = time.perf_counter() - started
    print(f"history: {source} ({len(rows)} grants, read/generated in {load_s:.2f} s)")

    params = TrainParams(alpha=args.alpha)
    started = time.perf_counter()
    prepared = prepare(rows)
    features_s = time.perf_counter() - started
    bundle, predicted, train_s = fit(prepared, params, max_minutes, step_minutes)
    used = prepared.used[prepared.cut:]
    model = score(offer_minutes(predicted, max_minutes, step_minutes), used)
    raw = baseline_predictions(prepared.rows, prepared.cut, max_minutes)
    evaluation = Evaluation(model=model, rows_train=prepared.cut, rows_test=len(used), train_seconds=train_s,
                            baselines={n: score(offer_minutes(raw[n], max_minutes, step_minutes), used)
                                       for n in BASELINES},
                            pinball=pinball_loss(used, predicted, args.alpha))
    all_s = _train_on_all(prepared, params)

    print(f"features (past-only, all {len(rows)} grants): {features_s:.2f} s")
    print(f"training: {train_s:.2f} s on {prepared.cut} grants (older 80%); "
          f"{all_s:.2f} s on all {len(rows)} grants; {params.num_rounds} rounds, 1 thread")
    print()
    _print_table(evaluation, raw, used, args.alpha)
    print()
    _print_goal(evaluation)
    print()
    _bench_serving(bundle, prepared.rows, prepared.cut, args, max_minutes, step_minutes)
    return 0


def _train_on_all(prepared, params: TrainParams) -> float:
    vocab = make_vocabularies(prepared.raw)
    x = encode(prepared.raw, vocab)
    started = time.perf_counter()
    train_booster(x, prepared.used, params)
    return time.perf_counter() - started


def _print_table(evaluation: Evaluation, raw: dict[str, np.ndarray], used: np.ndarray, alpha: float) -> None:
    print(f"held-out: newest {evaluation.rows_test} grants; trained on {evaluation.rows_train}")
    print(f"{'strategy':<19}{'coverage':>10}{'excess min':>12}{'ext/grant':>11}{'pinball':>10}")
    rows = [("model", evaluation.model, evaluation.pinball)]
    rows += [(n, m, pinball_loss(used, raw[n], alpha)) for n, m in evaluation.baselines.items()]
    for name, m, loss in rows:
        print(f"{name:<19}{m.coverage:>10.1%}{m.excess_minutes:>12.1f}{m.extension_rate:>11.3f}{loss:>10.2f}")
    print("coverage: used <= offered; excess: offered - used over covered grants; ext/grant: extensions "
          "needed, each adding the offer again; pinball: quantile loss of the unrounded length")


def _print_goal(evaluation: Evaluation) -> None:
    model = evaluation.model
    best = evaluation.best_baseline()
    if best is None:
        print("goal: no baseline covers as much as the model")
        return
    name, m = best
    ratio = model.excess_minutes / m.excess_minutes
    met = model.coverage >= 0.8 and ratio <= 0.7
    print(f"goal (coverage >= 80% and excess >= 30% below the best baseline at same-or-higher coverage): "
          f"{'MET' if met else 'NOT MET'}")
    print(f"  model {model.coverage:.1%} / {model.excess_minutes:.1f} min vs {name} {m.coverage:.1%} / "
          f"{m.excess_minutes:.1f} min: ratio {ratio:.2f} ({1 - ratio:.0%} less excess)")
    for other, om in evaluation.baselines.items():
        if other != name and om.coverage >= 0.8 and not math.isnan(om.excess_minutes):
            r = model.excess_minutes / om.excess_minutes
            print(f"  also vs {other} ({om.coverage:.1%} coverage, {om.excess_minutes:.1f} min): ratio {r:.2f} "
                  f"({1 - r:.0%} less excess)")


def _bench_serving(bundle, rows: list[HistoryRow], cut: int, args, max_minutes: float, step_minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        save_model(tmp, bundle)
        recommender = Recommender(tmp)
    assert recommender.load_error is None, recommender.load_error
    by_user: dict[str, list[HistoryRow]] = defaultdict(list)
    for row in rows:
        by_user[row.user].append(row)
    test = rows[cut:]
    picks = [test[i * len(test) // args.calls] for i in range(args.calls)]
    max_d, step = timedelta(minutes=max_minutes), timedelta(minutes=step_minutes)
    calls = []
    for row in picks:
        mine = by_user[row.user]
        before = mine[:bisect_left([r.requested_at for r in mine], row.requested_at)]
        req = RecommendRequest(user=row.user, resource=row.resource, kind=row.kind, labels=row.labels,
                               login=row.login, role=row.role, reason=row.reason, ticket=row.ticket,
                               requested_at=row.requested_at)
        calls.append((req, before[-args.recent:], before))
    x = encode(prepare_one(recommender, calls[0]), bundle.metadata.vocabularies)

    def timed(fn) -> tuple[np.ndarray, np.ndarray]:
        """Wall and CPU (this thread) milliseconds per call: on a shared machine the
        wall-clock tail is mostly time spent descheduled, which CPU time leaves out."""
        for _ in range(50):
            fn(calls[0])
        wall, cpu = np.empty(len(calls)), np.empty(len(calls))
        for i, call in enumerate(calls):
            c, t = time.thread_time(), time.perf_counter()
            fn(call)
            wall[i], cpu[i] = time.perf_counter() - t, time.thread_time() - c
        return wall * 1000, cpu * 1000

    results = [
        ("booster.predict, one row (reference)", timed(lambda c: bundle.booster.predict(x, num_threads=1))),
        (f"recommend(), last {args.recent} grants of the requester",
         timed(lambda c: recommender.recommend(c[0], max_d, step, c[1]))),
    ]
    sizes = np.array([len(c[2]) for c in calls])
    results.append((f"recommend(), all past (median {int(np.median(sizes))}, max {sizes.max()})",
                    timed(lambda c: recommender.recommend(c[0], max_d, step, c[2]))))
    fallbacks = sum(recommender.recommend(c[0], max_d, step, c[1]).fallback for c in calls[:300])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"serving, {len(calls)} calls on held-out requests, one booster, num_threads=1 "
          f"(load average {load:.1f} on {os.cpu_count()} cores):")
    print(f"{'':<48}{'wall p50':>9}{'wall p99':>9}{'cpu p50':>9}{'cpu p99':>9}  ms")
    for label, (wall, cpu) in results:
        print(f"{label:<48}{np.percentile(wall, 50):>9.3f}{np.percentile(wall, 99):>9.3f}"
              f"{np.percentile(cpu, 50):>9.3f}{np.percentile(cpu, 99):>9.3f}")
    fields = [dict(user=r.user, resource=r.resource, kind=r.kind, requested_at=r.requested_at,
                   asked_minutes=r.asked_minutes, used_minutes=r.used_minutes, labels=r.labels, login=r.login,
                   role=r.role, reason=r.reason, ticket=r.ticket, extensions=r.extensions) for r in rows[:5000]]
    started = time.thread_time()
    for kwargs in fields:
        HistoryRow(**kwargs)
    build_us = (time.thread_time() - started) / len(fields) * 1e6
    print(f"building one HistoryRow from store fields (task type included): {build_us:.1f} us CPU "
          f"(a caller that rebuilds {args.recent} rows per call adds {build_us * args.recent / 1000:.2f} ms)")
    ref_wall, ref_cpu = results[0][1]
    wall, cpu = results[1][1]
    print(f"ratio recommend()/predict at p50: {np.percentile(wall, 50) / np.percentile(ref_wall, 50):.1f}x; "
          f"goal p99 < 2 ms: wall {'MET' if np.percentile(wall, 99) < 2.0 else 'NOT MET'}, "
          f"cpu {'MET' if np.percentile(cpu, 99) < 2.0 else 'NOT MET'}; fallbacks in the first 300 calls: {fallbacks}")


def prepare_one(recommender: Recommender, call) -> list[tuple]:
    """Raw features of one request, to time the bare booster on a real row."""
    from recommend.features import features_for

    req, history, _ = call
    return [features_for(req.ask(), history).raw]


if __name__ == "__main__":
    raise SystemExit(main())
