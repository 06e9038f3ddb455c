"""Issue 19 part 1: words learned from the history itself, calibration to a target
coverage, and a second history with another story."""
from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from recommend.calibrate import Calibration, calibrated, check_coverage
from recommend.errors import ModelError
from recommend.history import write_history
from recommend.model import load_model
from recommend.serve import Recommender, RecommendRequest
from recommend.synth import generate as generate_shop
from recommend.synth_harbor import generate as generate_harbor
from recommend.tasks import classify_task
from recommend.text import WordStats, words_of
from recommend.training import evaluate_history, train_and_save
from tests.recommend.conftest import FAST

# Words of the harbor story that the keyword list does not know: a long and a short kind of work.
LONG, SHORT = "replay tracking events", "key rotation fleet"


@pytest.fixture(scope="module")
def harbor() -> list:
    return generate_harbor(4000, seed=5)


@pytest.fixture(scope="module")
def harbor_model(harbor: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("harbor-model")
    assert train_and_save(harbor, directory, FAST).replaced
    return directory


def test_the_keyword_list_does_not_know_the_harbor_words() -> None:
    assert classify_task(LONG) == classify_task(SHORT) == "other"


def test_words_are_cut_plainly_and_bounded() -> None:
    assert words_of("Replay the tracking events 2.3.1 for SR-77", "") == ("replay", "tracking", "events", "ticket:SR")
    assert words_of("x", "GDPR-12") == ("ticket:GDPR",)
    assert len(words_of(" ".join(f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200)), "")) == 24


def test_unknown_words_still_get_task_aware_offers(harbor: list, harbor_model: Path) -> None:
    """A history whose task words the keyword list does not know: the offer follows the words."""
    rec = Recommender(harbor_model, check_every=None)
    assert rec.load_error is None
    busiest = max({r.resource for r in harbor}, key=lambda name: sum(r.resource == name for r in harbor))
    user = max({r.user for r in harbor if r.resource == busiest},
               key=lambda u: sum(r.user == u and r.resource == busiest for r in harbor))
    kind = next(r.kind for r in harbor if r.resource == busiest)
    env = next(r.labels for r in harbor if r.resource == busiest)
    access = {"login": "ops"} if kind == "ssh" else {"role": "writer"}
    answers = {}
    for reason in (LONG, SHORT):
        req = RecommendRequest(user=user, resource=busiest, kind=kind, labels=env, reason=reason,
                               requested_at=harbor[-1].requested_at + timedelta(days=1), **access)
        answers[reason] = rec.recommend(req, timedelta(hours=10), timedelta(minutes=5), harbor)
    assert not answers[LONG].fallback
    assert answers[LONG].duration >= 2 * answers[SHORT].duration, answers
    assert 'the word "replay"' in answers[LONG].explanation
    assert 'the word "rotation"' in answers[SHORT].explanation


@pytest.mark.parametrize("story", ["shop", "harbor"])
def test_calibrated_coverage_meets_the_target_on_held_out_rows(story: str) -> None:
    rows = (generate_shop if story == "shop" else generate_harbor)(6000, seed=21)
    evaluation, _ = evaluate_history(rows, FAST, max_minutes=600, step_minutes=15, coverage=0.85)
    # 1200 held-out rows: the sampling error of a share near 0.85 is about 1 point, and a small
    # history drifts (its held-out people have more past than the window's); harbor lands 3.25 points
    # over here (2.4 before the pace features), the 40,000-grant benchmark within 1 point
    assert abs(evaluation.model.coverage - 0.85) <= 0.035, evaluation.model
    plain = evaluation.baselines["plain_lgbm@target"]
    assert evaluation.model.excess_minutes <= plain.excess_minutes, (evaluation.model, plain)
    tighter, _ = evaluate_history(rows, FAST, max_minutes=600, step_minutes=15, coverage=0.7)
    assert tighter.model.coverage < evaluation.model.coverage - 0.08
    assert tighter.model.excess_minutes < evaluation.model.excess_minutes


def test_calibration_factor_is_the_smallest_that_covers_enough() -> None:
    rng = np.random.default_rng(3)
    predicted = rng.uniform(10, 100, 400)
    used = predicted * rng.lognormal(0.0, 0.4, 400)
    cal = Calibration.of(predicted, used)
    factor = cal.factor(0.85, 5.0, None)
    needed = math.ceil(401 * 0.85)
    assert cal._covered(predicted, factor, 5.0, None) >= needed > cal._covered(predicted, factor * 0.99, 5.0, None)
    assert cal.factor(0.85, 60.0, None) < factor  # a coarser step covers more by rounding alone
    assert Calibration.of(predicted[:5], used[:5]).factor(0.85, 5.0, None) == 1.0  # too small a window
    # Reshaped offers (the model's): with the same relative spread at every length, long work's spread
    # in minutes is wider, so an exponent below 1 covers the same share of the window with fewer idle
    # minutes, and still covers enough.
    lengths = rng.uniform(10, 300, 2000)
    wide = Calibration.of(lengths, lengths * rng.lognormal(0.0, 0.5, 2000))
    shaped = wide.scale(0.85, 5.0, None)
    assert shaped.exponent < 1.0
    offers = [calibrated(wide.predicted, wide, 0.85, 5.0, None, shaped=s) for s in (False, True)]
    covered = [wide.used <= o + 1e-9 for o in offers]
    assert covered[1].sum() >= math.ceil(2001 * 0.85)
    assert (offers[1] - wide.used)[covered[1]].mean() < (offers[0] - wide.used)[covered[0]].mean()
    with pytest.raises(ValueError, match=r"`coverage` must be a number from 0\.5 to 0\.99"):
        check_coverage(1.5)
    with pytest.raises(ValueError, match="coverage"):
        Recommender(None, coverage=0.2)


def test_saved_words_and_window_round_trip_and_corruption_is_refused(harbor_model: Path, tmp_path: Path) -> None:
    bundle = load_model(harbor_model)
    assert bundle.calibration.usable and bundle.words.estimates(LONG, "")
    meta = json.loads((harbor_model / "model.json").read_text())
    assert WordStats.from_json(meta["words"]).to_json() == meta["words"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.txt").write_text((harbor_model / "model.txt").read_text())
    meta["calibration"]["used"] = meta["calibration"]["used"][:-1]
    (broken / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="calibration"):
        load_model(broken)


def test_the_harbor_story_is_deterministic_and_its_own() -> None:
    a, b = generate_harbor(300, seed=1), generate_harbor(300, seed=1)
    assert a == b and a != generate_harbor(300, seed=2)
    assert [r.requested_at for r in a] == sorted(r.requested_at for r in a)
    assert {r.labels["env"] for r in a} <= {"live", "preprod", "lab"}
    shop_words = {w for r in generate_shop(300, seed=1) for w in words_of(r.reason, r.ticket)}
    harbor_words = {w for r in a for w in words_of(r.reason, r.ticket)}
    assert len(harbor_words & shop_words) < 0.1 * len(harbor_words)


def test_recommend_explain_names_the_learned_words_that_moved_the_offer(harbor: list, harbor_model: Path,
                                                                        tmp_path: Path) -> None:
    """`jitgate recommend explain` on the harbor model: a reason in words the keyword list does not
    know is explained by those words as this history used them; a reason without them names none."""
    from click.testing import CliRunner

    from cli.main import cli

    path = tmp_path / "harbor.jsonl"
    write_history(harbor, path)
    row = harbor[-1]
    request = {"user": row.user, "resource": row.resource, "kind": row.kind, "labels": dict(row.labels),
               **({"login": row.login} if row.login else {"role": row.role}),
               "time": (row.requested_at + timedelta(days=1)).isoformat()}

    def explain(reason: str) -> dict:
        ask = json.dumps({**request, "reason": reason})
        result = CliRunner().invoke(cli, ["recommend", "explain", "--request", ask, "--history", str(path),
                                          "--model-dir", str(harbor_model), "--output", "json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    long, plain = explain(LONG), explain("as agreed")
    assert not long["fallback"] and 'the word "replay"' in long["explanation"], long
    assert "usually means about" in long["explanation"]
    assert "learned:" not in plain["explanation"], plain  # vague words moved nothing: none named
    assert long["minutes"] > plain["minutes"]
