from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recommend.errors import ModelError, TrainingError
from recommend.features import encode
from recommend.history import HistoryRow
from recommend.model import ALPHA_CHOICES, META_FILE, MODEL_FILE, TrainParams, load_model
from recommend.training import fit, prepare, train_and_save
from tests.recommend.conftest import FAST


def test_training_is_deterministic(rows: list[HistoryRow], trained_dir: Path, tmp_path: Path) -> None:
    # `trained_dir` is a first training on `rows` with FAST (the session's, made once for the area).
    second = train_and_save(list(reversed(rows)), tmp_path / "b", FAST)  # order of the file does not matter
    text_a = (trained_dir / MODEL_FILE).read_text()
    assert text_a == (tmp_path / "b" / MODEL_FILE).read_text()
    assert load_model(trained_dir).metadata.version == second.version
    assert text_a.count("Tree=") == 80


def test_saved_model_loads_without_retraining_and_predicts_the_same(rows: list[HistoryRow], trained_dir: Path) -> None:
    prepared = prepare(rows)
    bundle, predicted, _ = fit(prepared, FAST)
    loaded = load_model(trained_dir)
    x = encode(prepared.raw[prepared.cut:], loaded.metadata.vocabularies)
    assert np.array_equal(loaded.predict_minutes(x), predicted)
    meta = loaded.metadata
    assert meta.version == bundle.metadata.version and meta.rows == len(rows)
    assert meta.rows_train + meta.rows_test == len(rows) and meta.rows_test == len(rows) // 5
    assert set(meta.metrics) == {"coverage", "excess_minutes", "extension_rate", "pinball"}
    assert "orders-db" in meta.vocabularies["resource"] and meta.alpha in ALPHA_CHOICES
    assert meta.params["deterministic"] is True and meta.params["force_row_wise"] is True


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / MODEL_FILE).write_text((d / MODEL_FILE).read_text()[:5000]), "corrupt"),
    (lambda d: (d / MODEL_FILE).unlink(), "missing"),
    (lambda d: (d / META_FILE).write_text("{not json"), "corrupt metadata"),
    (lambda d: (d / META_FILE).unlink(), "missing"),
    (lambda d: _rewrite_meta(d, feature_version=999), "another version"),
])
def test_damaged_model_is_a_clear_error(trained_dir: Path, tmp_path: Path, damage, message: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained_dir, copy)
    damage(copy)
    with pytest.raises(ModelError, match=message):
        load_model(copy)


def test_garbage_with_a_matching_checksum_is_refused_by_lightgbm(trained_dir: Path, tmp_path: Path) -> None:
    import hashlib

    copy = tmp_path / "model"
    shutil.copytree(trained_dir, copy)
    garbage = "tree\nversion=v4\nthis is not a model\n"
    (copy / MODEL_FILE).write_text(garbage)
    _rewrite_meta(copy, model_sha256=hashlib.sha256(garbage.encode()).hexdigest())
    with pytest.raises(ModelError, match=r"LightGBM cannot read it|features"):
        load_model(copy)


def test_no_model_at_all(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no trained model"):
        load_model(tmp_path / "nothing")


def test_replaced_only_if_not_worse(rows: list[HistoryRow], trained_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "model"
    shutil.copytree(trained_dir, directory)  # a good model: FAST on `rows`, trained once for the area
    good = load_model(directory).metadata
    good_text = (directory / MODEL_FILE).read_text()
    worse = train_and_save(rows, directory, TrainParams(num_rounds=2))
    assert not worse.replaced and "worse" in worse.reason
    assert worse.previous_version == good.version and worse.compared_rows == len(rows) // 5
    assert (directory / MODEL_FILE).read_text() == good_text, "a worse model replaced a better one"
    assert load_model(directory).metadata.version == good.version
    same = train_and_save(rows, directory, FAST)
    assert same.replaced and "not worse" in same.reason
    forced = train_and_save(rows, directory, TrainParams(num_rounds=2), force=True)
    assert forced.replaced and "forced" in forced.reason
    assert load_model(directory).metadata.version == forced.version != good.version


def test_unusable_saved_model_is_replaced_with_a_warning(rows: list[HistoryRow], tmp_path: Path) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / MODEL_FILE).write_text("junk")
    (directory / META_FILE).write_text("junk")
    outcome = train_and_save(rows, directory, FAST)
    assert outcome.replaced and outcome.warnings and "corrupt" in outcome.warnings[0]
    assert load_model(directory).metadata.version == outcome.version


def test_too_little_history_refused(rows: list[HistoryRow], tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="too little history"):
        train_and_save(rows[:40], tmp_path / "m", FAST)
    assert not (tmp_path / "m").exists()


def _rewrite_meta(directory: Path, **changes: object) -> None:
    meta = json.loads((directory / META_FILE).read_text())
    meta.update(changes)
    (directory / META_FILE).write_text(json.dumps(meta))


def test_comparison_uses_only_rows_the_old_model_never_saw(rows: list[HistoryRow], tmp_path: Path) -> None:
    directory = tmp_path / "model"
    ordered = sorted(rows, key=lambda r: r.requested_at)
    old = train_and_save(ordered[:1500], directory, FAST)
    grown = train_and_save(ordered, directory, FAST)  # a history that only grew
    newer = [r for r in ordered[len(ordered) - len(ordered) // 5:]
             if r.requested_at > ordered[int(1500 * 0.8) - 1].requested_at]
    assert grown.previous_version == old.version and grown.compared_rows == len(newer)
