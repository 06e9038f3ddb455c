"""`jitgate recommend`: synthetic history, training, evaluation and explanation
of duration recommendations (see recommend/)."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.output import echo

F = TypeVar("F", bound=Callable[..., Any])
_REQUEST_FIELDS = {"user", "resource", "kind", "labels", "login", "role", "reason", "ticket", "time", "requested_at"}


def _data_dir(data_dir: str | None) -> Path:
    return Path(data_dir or os.environ.get("JITGATE_DATA_DIR") or Path.home() / ".jitgate")


def _model_dir(model_dir: str | None, data_dir: str | None) -> Path:
    return Path(model_dir) if model_dir else _data_dir(data_dir) / "model"


def _given_duration(text: str, what: str) -> timedelta:
    """A duration option with a default (never None)."""
    d = _duration(text, what)
    assert d is not None
    return d


def _duration(text: str | None, what: str) -> timedelta | None:
    if text is None:
        return None
    from recommend.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.ClickException(f"{what}: {exc}") from None


def _load_policies(path: str | None, data_dir: Path) -> Any:
    """The policy set for resource labels: --policies, else <data dir>/policies.yaml, else None."""
    candidate = Path(path) if path else data_dir / "policies.yaml"
    if path is None and not candidate.exists():
        return None
    from policy import PolicyLoadError, load_policy_set

    try:
        return load_policy_set(candidate, run_tests=False)
    except PolicyLoadError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        raise click.ClickException(f"--policies: {first}") from None


def _fail_plainly(func: F) -> F:
    """Turn this package's errors into one plain line on stderr and exit code 1."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from recommend.errors import RecommendError

        try:
            return func(*args, **kwargs)
        except RecommendError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None
    return wrapper  # type: ignore[return-value]


def _model_options(func: F) -> F:
    func = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        help="jitgate data directory [env JITGATE_DATA_DIR, default ~/.jitgate]")(func)
    return click.option("--model-dir", type=click.Path(file_okay=False), default=None,
                        help="model directory [default <data dir>/model]")(func)


def _coverage_option(func: F) -> F:
    from recommend.calibrate import DEFAULT_COVERAGE, MAX_COVERAGE, MIN_COVERAGE

    return click.option("--coverage", type=click.FloatRange(MIN_COVERAGE, MAX_COVERAGE), default=DEFAULT_COVERAGE,
                        show_default=True,
                        help="share of grants an offer should cover (calibrated on the newest training rows; "
                             "the server's `recommend_coverage`)")(func)


def _output_option(func: F) -> F:
    return click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)(func)


def _limits_options(func: F) -> F:
    func = click.option("--step", "step_text", default="15m", show_default=True,
                        help="round recommendations up to this step")(func)
    return click.option("--max", "max_text", default="8h", show_default=True,
                        help="policy maximum duration (also the `fixed_max` baseline)")(func)


@click.group()
def recommend() -> None:
    """Duration recommendations: synthetic history, train, evaluate, explain."""


@recommend.command()
@click.option("--rows", type=click.IntRange(min=0), default=5000, show_default=True, help="grants to generate")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="history file to write (JSON lines); - for stdout")
@click.option("--policies", "policies_path", type=click.Path(exists=True), default=None,
              help="tell the story about these policies' resources and users, over the last 180 days "
                   "(as the demo does) instead of the built-in ones")
@_fail_plainly
def synth(rows: int, seed: int, out_path: str, policies_path: str | None) -> None:
    """Write a synthetic history (same seed, same file); see recommend/synth.py for its story."""
    from recommend.history import write_history, write_rows
    from recommend.synth import generate

    if policies_path is not None:
        from recommend.demo import demo_history

        try:
            history = demo_history(_load_policies(policies_path, Path(".")), rows, seed)
        except ValueError as exc:
            raise click.ClickException(f"{policies_path}: {exc}") from None
    else:
        history = generate(rows, seed)
    if out_path == "-":
        write_rows(history, sys.stdout)
        return
    count = write_history(history, out_path)
    echo(f"wrote {count} grants to {out_path}", err=True)


@recommend.command()
@click.option("--history", "history_path", type=click.Path(dir_okay=False), default=None,
              help="history file (JSON lines) [default: the store of --data-dir: its grants and imported rows]")
@click.option("--policies", "policies_path", type=click.Path(), default=None,
              help="without --history: policies giving the grants' resource labels "
                   "[default <data dir>/policies.yaml if there]")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="without --history: only grants requested in the last DAYS [default: all]")
@_model_options
@_limits_options
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="quantile the model predicts [default: 0.7 or 0.8, whichever leaves less excess on the newest "
                   "15% of the training rows]")
@click.option("--rounds", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--force", is_flag=True, help="save the new model even if it is worse than the saved one")
@_output_option
@_fail_plainly
def train(history_path: str | None, policies_path: str | None, days: float | None, model_dir: str | None,
          data_dir: str | None, max_text: str, step_text: str, alpha: float | None, rounds: int, seed: int, force: bool,
          output: str) -> None:
    """Train on the older 80% of a history; replace the saved model only if not worse on the newest 20%.

    Without --history it trains on the store of --data-dir (finished grants with
    sessions, plus imported history) and saves into <data dir>/model, where a
    running server picks the new model up within seconds.
    """
    from recommend.history import read_history
    from recommend.training import train_and_save

    max_d, step = _given_duration(max_text, "--max"), _given_duration(step_text, "--step")
    target = _model_dir(model_dir, data_dir)
    warnings: list[str] = []
    policies = None
    if history_path is not None:
        if policies_path is not None or days is not None:
            raise click.ClickException("--policies and --days apply to training from the store, not with --history")
        rows = read_history(history_path)
        source = history_path
    else:
        from controlplane.local_history import history_from_store

        root = _data_dir(data_dir)
        policies = _load_policies(policies_path, root)
        found = history_from_store(root, policies, days)
        rows, warnings = found.rows, list(found.warnings)
        source = f"{root} ({found.grants} grants, {found.imported} imported)"
    outcome = train_and_save(rows, target, _params(alpha, num_rounds=rounds, seed=seed), force=force,
                             max_minutes=max_d.total_seconds() / 60, step_minutes=step.total_seconds() / 60,
                             peers_of=policies.peers_of if policies is not None else None)
    for warning in [*warnings, *outcome.warnings]:
        echo(f"warning: {warning}", err=True)
    if output == "json":
        click.echo(json.dumps({"replaced": outcome.replaced, "reason": outcome.reason, "version": outcome.version,
                               "previous_version": outcome.previous_version, "model_dir": str(target),
                               "rows": len(rows), "source": source, "metrics": outcome.metrics}, indent=2))
        return
    verb = "saved" if outcome.replaced else "not saved"
    m = outcome.metrics
    echo(f"trained on {len(rows)} grants from {source}")
    echo(f"model {outcome.version} {verb} in {target}: {outcome.reason}")
    echo(f"held-out: coverage {m['coverage']:.1%}, excess {m['excess_minutes']:.1f} min, "
               f"{m['extension_rate']:.2f} extensions per grant")


@recommend.command()
@click.option("--history", "history_path", type=click.Path(dir_okay=False), required=True,
              help="history file (JSON lines)")
@_limits_options
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="quantile the model predicts [default: 0.7 or 0.8, whichever leaves less excess on the newest "
                   "15% of the training rows]")
@click.option("--rounds", type=click.IntRange(min=1), default=300, show_default=True)
@_coverage_option
@_output_option
@_fail_plainly
def evaluate(history_path: str, max_text: str, step_text: str, alpha: float | None, rounds: int, coverage: float,
             output: str) -> None:
    """Model vs baselines on the newest 20% of a history (trained on the older 80%; nothing is saved).

    coverage: share of grants whose used time fits; excess: mean offered minus used
    minutes over covered grants; extension rate: extensions needed per grant, each
    adding the offered duration again. The model and the `@target` baselines are
    calibrated to --coverage on the newest 15% of the training rows.
    """
    from recommend.history import read_history
    from recommend.training import evaluate_history

    rows = read_history(history_path)
    max_d, step = _given_duration(max_text, "--max"), _given_duration(step_text, "--step")
    evaluation, _ = evaluate_history(rows, _params(alpha, num_rounds=rounds), max_d.total_seconds() / 60,
                                     step.total_seconds() / 60, coverage)
    if output == "json":
        click.echo(json.dumps(evaluation.to_json(), indent=2))
        return
    from cli.output import Col, print_table

    print_table(f"held-out {evaluation.rows_test} grants (trained on {evaluation.rows_train}); "
                f"target coverage {evaluation.target:.0%}; model quantile {evaluation.alpha:.2f}, offer exponent "
                f"{evaluation.scale.exponent:.1f}",
                [Col("strategy"), *(Col(c, justify="right") for c in ("coverage", "excess min", "extensions/grant"))],
                ([name, f"{m.coverage:.1%}", f"{m.excess_minutes:.1f}", f"{m.extension_rate:.3f}"]
                 for name, m in [("model", evaluation.model), *evaluation.baselines.items()]))


def _params(alpha: float | None, **knobs: Any) -> Any:
    """TrainParams: the quantile given, or the default choice among ALPHA_CHOICES."""
    from recommend.model import TrainParams

    return TrainParams(**knobs) if alpha is None else TrainParams(alpha=alpha, alpha_choices=(), **knobs)


def _parse_request(text: str) -> Any:
    from recommend.history import parse_time
    from recommend.serve import RecommendRequest

    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"--request: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise click.ClickException("--request: must be a JSON object")
    unknown = sorted(set(obj) - _REQUEST_FIELDS)
    if unknown:
        raise click.ClickException(
            f"--request: unknown field `{unknown[0]}` (known: {', '.join(sorted(_REQUEST_FIELDS))})"
        )
    when = obj.get("requested_at", obj.get("time"))
    try:
        labels = obj.get("labels") or {}
        if not isinstance(labels, dict):
            raise ValueError("`labels` must be a map of strings")
        return RecommendRequest(
            user=str(obj.get("user", "")), resource=str(obj.get("resource", "")), kind=str(obj.get("kind", "")),
            labels={str(k): str(v) for k, v in labels.items()}, login=obj.get("login"), role=obj.get("role"),
            reason=str(obj.get("reason", "")), ticket=str(obj.get("ticket", "")),
            requested_at=parse_time(when) if when is not None else None)
    except ValueError as exc:
        raise click.ClickException(f"--request: {exc}") from None


@recommend.command()
@click.argument("request_arg", metavar="[REQUEST]", required=False)
@click.option("--request", "request_opt", help='the request as JSON: {"user":..,"resource":..,"kind":..,'
              '"labels":{..},"login"|"role":..,"reason":..,"ticket":..,"time":RFC 3339}')
@click.option("--history", "history_path", type=click.Path(dir_okay=False), default=None,
              help="past grants (JSON lines) for the personal history and the fallback "
                   "[default: the store of --data-dir, if there is one]")
@_model_options
@click.option("--max", "max_text", default=None, help="policy maximum duration (none: no clamp)")
@click.option("--step", "step_text", default="15m", show_default=True)
@_coverage_option
@_output_option
@_fail_plainly
def explain(request_arg: str | None, request_opt: str | None, history_path: str | None, model_dir: str | None,
            data_dir: str | None, max_text: str | None, step_text: str, coverage: float, output: str) -> None:
    """Recommend a duration for one request and say why (naming the learned words that moved it)."""
    from policy.durations import format_duration
    from recommend.history import read_history
    from recommend.serve import Recommender

    text = request_opt if request_opt is not None else request_arg
    if text is None:
        raise click.ClickException("give the request as JSON, with --request '{...}' or as the argument")
    req = _parse_request(text)
    if history_path:
        history = read_history(history_path)
    else:
        from controlplane.local_history import db_path, history_from_store

        root = _data_dir(data_dir)
        history = history_from_store(root, _load_policies(None, root)).rows if db_path(root).exists() else []
    recommender = Recommender(_model_dir(model_dir, data_dir), coverage=coverage)
    if recommender.load_error:
        echo(f"warning: {recommender.load_error}; answering from fallback statistics", err=True)
    step = _duration(step_text, "--step")
    result = recommender.recommend(req, _duration(max_text, "--max"), step, history)  # type: ignore[arg-type]
    if output == "json":
        click.echo(json.dumps({"duration": format_duration(result.duration), "minutes": result.minutes,
                               "explanation": result.explanation, "fallback": result.fallback,
                               "basis": result.basis, "model_version": result.model_version}, indent=2))
        return
    label = " (fallback)" if result.fallback else f" (model {result.model_version})"
    echo(f"recommended: {format_duration(result.duration)}{label}")
    echo(f"why: {result.explanation}")


@recommend.command("import")
@click.argument("history_path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="the server's data directory (created if new) [env JITGATE_DATA_DIR, default ~/.jitgate]")
@_output_option
@_fail_plainly
def import_history(history_path: str, data_dir: str | None, output: str) -> None:
    """Import a history file (JSON lines) into the store of a data directory.

    The rows feed only the duration recommender (explanations, fallbacks,
    training); they never become requests or grants. One audit event records
    the row count and the file's SHA-256; the same file is refused a second time.
    """
    from controlplane.local_history import import_history_file

    target = _data_dir(data_dir)
    result = import_history_file(target, history_path)
    if output == "json":
        click.echo(json.dumps({"rows": result.rows, "sha256": result.sha256, "store": str(result.db_path)}, indent=2))
        return
    echo(f"imported {result.rows} grants from {history_path} (sha256 {result.sha256[:12]}) into {result.db_path}")


@recommend.command("export")
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True, help="how far back")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="history file to write (JSON lines); - for stdout")
@click.option("--identity", type=click.Path(file_okay=False), default=None,
              help="identity bundle directory (default $JITGATE_IDENTITY or ~/.jitgate/identity)")
@click.option("--server", default=None, help="server host:port (default $JITGATE_SERVER or 127.0.0.1:7443)")
def export_history(days: int, out_path: str, identity: str | None, server: str | None) -> None:
    """Export the control plane's finished grants (with sessions) as a history file, over gRPC.

    Needs an admin identity. The file is what `import`, `train --history` and
    `evaluate --history` read.
    """
    from cli.client import handle_errors

    handle_errors(_fail_plainly(_export))(days, out_path, identity, server)


def _export(days: int, out_path: str, identity: str | None, server: str | None) -> None:
    from cli.client import connect
    from jitgate.v1 import audit_pb2
    from recommend.history import parse_lines, write_history, write_rows

    client = connect(identity, server)
    try:
        stream = client.audit.ExportHistory(audit_pb2.ExportHistoryRequest(days=days), timeout=client.timeout * 10)
        # Checked line by line: a file this writes always reads back (`server` names the source of a bad line).
        rows = list(parse_lines((line.json for line in stream), "server"))
    finally:
        client.close()
    if out_path == "-":
        write_rows(rows, sys.stdout)
        return
    count = write_history(rows, out_path)
    echo(f"wrote {count} grants to {out_path}", err=True)
