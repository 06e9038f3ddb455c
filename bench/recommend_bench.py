"""Duration recommender: model vs every baseline on held-out history of two
synthetic stories (recommend.synth, recommend.synth_harbor), calibration to a
target coverage, training time, serving latency.

    .venv/bin/python bench/recommend_bench.py                 # 40,000 grants of each story
    .venv/bin/python bench/recommend_bench.py --history FILE  # any history (JSON lines)

Time-based split: train on the older 80% (its newest 15% kept aside to
calibrate), measure on the newest 20%. Goals: coverage within 2 points of the
target; at coverage >= 80%, the model's excess minutes at least 30% below the
best baseline at the same coverage; never worse than the plain LightGBM model.
Nothing is tuned on either story's held-out part.
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recommend.calibrate import DEFAULT_COVERAGE
from recommend.durations import parse_duration
from recommend.evaluate import CALIBRATED_SUFFIX, Evaluation
from recommend.features import encode
from recommend.history import HistoryRow, read_history
from recommend.model import TrainParams, save_model
from recommend.serve import Recommender, RecommendRequest
from recommend.synth import generate
from recommend.synth_harbor import generate as generate_harbor
from recommend.training import evaluate_history, prepare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=40_000, help="synthetic grants per story (ignored with --history)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--history", type=Path, help="one history file instead of the two synthetic stories")
    parser.add_argument("--max", default="8h", help="policy maximum (clamp, and the fixed_max baseline)")
    parser.add_argument("--step", default="15m", help="rounding step")
    parser.add_argument("--alpha", type=float, default=None, help="one quantile level (default: the CLI's choice)")
    parser.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE, help="target coverage")
    parser.add_argument("--calls", type=int, default=3000, help="serving calls to time")
    parser.add_argument("--recent", type=int, default=200, help="past grants of the requester passed per call")
    args = parser.parse_args()
    max_minutes = parse_duration(args.max).total_seconds() / 60
    step_minutes = parse_duration(args.step).total_seconds() / 60
    if args.history:
        stories = [(str(args.history), lambda: read_history(args.history))]
    else:
        stories = [
            (f"shop (recommend.synth), {args.rows} grants, seed {args.seed}", lambda: generate(args.rows, args.seed)),
            (
                f"harbor (recommend.synth_harbor), {args.rows} grants, seed {args.seed}",
                lambda: generate_harbor(args.rows, args.seed),
            ),
        ]
    params = TrainParams() if args.alpha is None else TrainParams(alpha=args.alpha, alpha_choices=())
    print("each history runs recommend.training.evaluate_history, the function `jitgate recommend evaluate` "
          "calls, with the same defaults (8h max, 15m step, quantile chosen among 0.7/0.8, 300 rounds, "
          "coverage 0.85; the plain baseline at 0.8)")
    last = None
    verdicts = []
    for source, make in stories:
        started = time.perf_counter()
        rows = make()
        print(f"history: {source} ({len(rows)} grants, read/generated in {time.perf_counter() - started:.2f} s)")
        started = time.perf_counter()
        evaluation, bundle = evaluate_history(rows, params, max_minutes, step_minutes, args.coverage)
        print(f"evaluate (features, model, calibration, every baseline): {time.perf_counter() - started:.2f} s; "
              f"model training {evaluation.train_seconds:.2f} s ({len(params.alpha_choices) or 1} quantile "
              f"level(s) tried), {params.num_rounds} rounds, 1 thread")
        _print_table(evaluation)
        verdicts.append(_print_goal(evaluation))
        print()
        last = (bundle, rows)
    print(f"duration goal on every history: {'PASS' if all(verdicts) else 'NOT MET'}")
    print()
    assert last is not None
    bundle, rows = last
    prepared = prepare(rows)
    _bench_serving(bundle, prepared.rows, prepared.cut, args, max_minutes, step_minutes)
    return 0


def _print_table(evaluation: Evaluation) -> None:
    print(
        f"held-out: newest {evaluation.rows_test} grants; trained on {evaluation.rows_train} (the newest 15% of "
        f"those kept aside to calibrate); target coverage {evaluation.target:.0%}; model: quantile "
        f"{evaluation.alpha:.2f}, calibration factor {evaluation.scale.factor:.3f}, exponent "
        f"{evaluation.scale.exponent:.1f} (both chosen on that window)"
    )
    print(f"{'strategy':<27}{'coverage':>10}{'excess min':>12}{'ext/grant':>11}")
    for name, m in [("model", evaluation.model), *evaluation.baselines.items()]:
        print(f"{name:<27}{m.coverage:>10.1%}{m.excess_minutes:>12.1f}{m.extension_rate:>11.3f}")
    print("coverage: used <= offered; excess: offered - used over covered grants; ext/grant: extensions "
          "needed, each adding the offer again; @target: calibrated to the target on the same window as the model")


SAME_COVERAGE_SLACK = 0.005  # a baseline within half a point below the model's coverage counts as reaching it


def _print_goal(evaluation: Evaluation) -> bool:
    """The issue's goal lines for one history; True when every one is met."""
    model = evaluation.model
    calibration_ok = abs(model.coverage - evaluation.target) <= 0.02
    print(f"calibration: coverage {model.coverage:.1%} vs target {evaluation.target:.0%}: "
          f"{'MET' if calibration_ok else 'NOT MET'} (within 2 points)")
    # Every baseline, calibrated or not, that reaches the model's coverage (half a point of slack
    # in the baseline's favour: excess only grows with coverage).
    eligible = [(m.excess_minutes, n, m) for n, m in evaluation.baselines.items()
                if m.coverage >= model.coverage - SAME_COVERAGE_SLACK and not math.isnan(m.excess_minutes)]
    excess, name, m = min(eligible)
    ratio = model.excess_minutes / excess
    goal_ok = model.coverage >= 0.8 and ratio <= 0.7
    print(f"goal: at >= 80% coverage, excess >= 30% below the best baseline reaching the same coverage "
          f"(>= {model.coverage - SAME_COVERAGE_SLACK:.1%}): {name} {m.coverage:.1%} / {excess:.1f} min; model "
          f"{model.coverage:.1%} / {model.excess_minutes:.1f} min: ratio {ratio:.2f} ({1 - ratio:.0%} less): "
          f"{'MET' if goal_ok else 'NOT MET'}")
    plain_ok = True
    for plain in ("plain_lgbm", "plain_lgbm" + CALIBRATED_SUFFIX):
        pm = evaluation.baselines[plain]
        better = model.excess_minutes <= pm.excess_minutes and model.coverage >= pm.coverage - SAME_COVERAGE_SLACK
        plain_ok = plain_ok and better
        print(f"never worse than {plain} ({pm.coverage:.1%} / {pm.excess_minutes:.1f} min): "
              f"{'MET' if better else 'NOT MET'}")
    passed = calibration_ok and goal_ok and plain_ok
    print(f"this history: {'PASS' if passed else 'NOT MET'}")
    return passed


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
    x = encode(prepare_one(bundle, calls[0]), bundle.metadata.vocabularies)

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
    fields: list[dict[str, Any]] = [dict(user=r.user, resource=r.resource, kind=r.kind, requested_at=r.requested_at,
                   asked_minutes=r.asked_minutes, used_minutes=r.used_minutes, labels=r.labels, login=r.login,
                   role=r.role, reason=r.reason, ticket=r.ticket, extensions=r.extensions) for r in rows[:5000]]
    started = time.thread_time()
    for kwargs in fields:
        HistoryRow(**kwargs)
    build_us = (time.thread_time() - started) / len(fields) * 1e6
    print(f"building one HistoryRow from store fields (task type included): {build_us:.1f} us CPU "
          f"(a caller that rebuilds {args.recent} rows per call adds {build_us * args.recent / 1000:.2f} ms)")
    ref_wall, _ref_cpu = results[0][1]
    wall, cpu = results[1][1]
    print(f"ratio recommend()/predict at p50: {np.percentile(wall, 50) / np.percentile(ref_wall, 50):.1f}x; "
          f"goal p99 < 2 ms: wall {'MET' if np.percentile(wall, 99) < 2.0 else 'NOT MET'}, "
          f"cpu {'MET' if np.percentile(cpu, 99) < 2.0 else 'NOT MET'}; fallbacks in the first 300 calls: {fallbacks}")


def prepare_one(bundle, call) -> list[tuple]:
    """Raw features of one request, to time the bare booster on a real row."""
    from recommend.features import features_for

    req, history, _ = call
    return [features_for(req.ask(), history, bundle.words).raw]


if __name__ == "__main__":
    raise SystemExit(main())
