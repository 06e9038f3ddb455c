from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from recommend.history import read_history

REQUEST = {"user": "alice", "resource": "orders-db", "kind": "postgres", "labels": {"env": "prod"},
           "role": "readonly", "reason": "monthly report", "time": "2026-12-01T10:00:00Z"}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "history.jsonl"
    result = CliRunner().invoke(cli, ["recommend", "synth", "--rows", "1500", "--seed", "4", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["recommend", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_synth_writes_valid_deterministic_history(history: Path, tmp_path: Path) -> None:
    assert len(read_history(history)) == 1500
    code, out, _ = _run("synth", "--rows", "1500", "--seed", "4")
    assert code == 0 and out == history.read_text()


def test_evaluate_json_shape(history: Path) -> None:
    code, out, err = _run("evaluate", "--history", str(history), "--output", "json", "--max", "2h", "--rounds", "60")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == ["model", "baselines", "rows_train", "rows_test", "target_coverage"]
    assert list(data["baselines"]) == ["fixed_1h", "fixed_max", "resource_median", "resource_p80", "task_p80",
                                       "user_resource_p80", "plain_lgbm", "resource_p80@target", "task_p80@target",
                                       "user_resource_p80@target", "plain_lgbm@target"]
    for metrics in [data["model"], *data["baselines"].values()]:
        assert list(metrics) == ["coverage", "excess_minutes", "extension_rate"]
        assert 0.0 <= metrics["coverage"] <= 1.0
    assert data["rows_train"] == 1200 and data["rows_test"] == 300
    code, table, _ = _run("evaluate", "--history", str(history), "--rounds", "20")
    assert code == 0 and "user_resource_p80" in table and "coverage" in table


def test_train_then_explain_with_data_dir_from_env(history: Path, tmp_path: Path) -> None:
    rows = read_history(history)
    busiest = max({r.resource for r in rows if r.kind == "postgres" and r.labels["env"] == "prod"},
                  key=lambda name: sum(r.resource == name for r in rows))
    request = {**REQUEST, "resource": busiest}
    env = {"JITGATE_DATA_DIR": str(tmp_path / "data")}
    code, out, err = _run("train", "--history", str(history), "--rounds", "60", "--output", "json", env=env)
    assert code == 0, err
    trained = json.loads(out)
    assert trained["replaced"] and (tmp_path / "data" / "model" / "model.txt").exists()
    code, out, err = _run("train", "--history", str(history), "--rounds", "2", env=env)
    assert code == 0 and "not saved" in out and "worse" in out
    code, out, err = _run("explain", "--request", json.dumps(request), "--history", str(history), "--max", "2h",
                          "--output", "json", env=env)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["model_version"] == trained["version"] and answer["fallback"] is False
    assert (
        answer["minutes"] % 15 == 0 and answer["minutes"] <= 120 and "similar report requests" in answer["explanation"]
    )
    code, out, _ = _run("explain", json.dumps(REQUEST), "--model-dir", str(tmp_path / "data" / "model"))
    assert code == 0 and out.startswith("recommended: ") and "why: " in out


def test_explain_without_model_warns_and_falls_back(tmp_path: Path) -> None:
    code, out, err = _run("explain", "--request", json.dumps(REQUEST), "--data-dir", str(tmp_path), "--output", "json")
    assert code == 0
    assert err.startswith("warning: no trained model") and err.count("\n") == 1
    assert json.loads(out)["fallback"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--history", "{bad}"], "{bad}:2: not valid JSON"),
        (["evaluate", "--history", "{bad}"], "{bad}:2: not valid JSON"),
        (["train", "--history", "{missing}"], "no such file"),
        (["evaluate", "--history", "{small}"], "too little history"),
        (["evaluate", "--history", "{small}", "--max", "soon"], "--max: `soon` is not a duration"),
        (["explain", "--request", '{"user": "a"}'], "needs `user`, `resource` and `kind`"),
        (["explain", "--request", "[1]"], "must be a JSON object"),
        (["explain", "--request", '{"user": "a", "resource": "r", "kind": "ssh", "when": 1}'], "unknown field `when`"),
        (["explain"], "give the request as JSON"),
        (["import", "{bad}"], "{bad}:2: not valid JSON"),
        (["import", "{missing}"], "no such file"),
        (["train"], "no control plane store here"),
        (
            ["export", "--identity", "{missing}", "--server", "127.0.0.1:1"],
            "identity directory `{missing}` does not exist",
        ),
    ],
)
def test_errors_are_one_plain_line(history: Path, tmp_path: Path, args: list[str], message: str) -> None:
    lines = history.read_text().splitlines()
    bad, small = tmp_path / "bad.jsonl", tmp_path / "small.jsonl"
    bad.write_text(lines[0] + "\n{oops\n")
    small.write_text("\n".join(lines[:30]) + "\n")
    paths = {"{bad}": str(bad), "{small}": str(small), "{missing}": str(tmp_path / "none.jsonl")}
    code, _, err = (
        _run(*[paths.get(a, a) for a in args], "--data-dir", str(tmp_path))
        if args[0] in ("train", "explain", "import")
        else _run(*[paths.get(a, a) for a in args])
    )
    assert code == 1
    for placeholder, path in paths.items():
        message = message.replace(placeholder, path)
    assert message in err
    assert err.count("\n") <= 2 and "Traceback" not in err
