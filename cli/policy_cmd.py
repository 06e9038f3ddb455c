"""`jitgate policy check|test|eval|diff`: what a policy author runs, locally and in CI.

Each command loads a policy file someone wrote, so it runs itself again in a
sandboxed child (policy.sandbox: CPU, memory and wall-clock limits) and prints
what the child printed; a limit hit is one plain error line and exit status 1.
"""
from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from cli import exits
from cli.output import Col, Styled, echo, echo_styled, json_text, print_table, visible
from policy import PolicyLoadError, PolicyRequest, PolicySet, RequestError, format_duration, load_policy_set, sandbox
from policy.diff import diff as diff_sets
from policy.diff import read_requests, request_label, summary, to_markdown
from policy.limits import MAX_REQUEST_JSON_BYTES
from policy.yamlnodes import Reader, Sink, compose

OUTPUT = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="Output format.")
DEFAULT_PATH = "policies.yaml"


def _fail(message: str) -> NoReturn:
    echo(f"error: {message}", err=True)
    sys.exit(1)


def _emit_json(data: Any) -> None:
    click.echo(json_text(data, indent=2))


def _sandboxed(args: list[str]) -> None:
    """Outside a sandbox: run `jitgate policy ARGS` in one, print its output and exit with
    its status. Inside one: return, and the command does its work."""
    if sandbox.inside():
        return
    try:
        proc = sandbox.run("cli.main:main", ["policy", *args], sandbox.Limits.from_env())
    except ValueError:
        _fail(f"{sandbox.CPU_ENV}, {sandbox.MEMORY_ENV} and {sandbox.WALL_ENV} must be numbers")
    except sandbox.SandboxError as e:
        _fail(f"checking the policy {e}; the file is refused")
    click.echo(proc.stdout, nl=False)
    click.echo(proc.stderr, nl=False, err=True)
    sys.exit(proc.returncode)


def _load(path: str, output: str) -> PolicySet:
    """Load without running tests; print every error and exit 1 on refusal."""
    try:
        return load_policy_set(path, run_tests=False)
    except PolicyLoadError as e:
        if output == "json":
            _emit_json({"ok": False, "path": path, "errors": [
                {"file": x.file, "line": x.line, "col": x.col, "code": x.code, "message": x.message}
                for x in e.errors]})
        else:
            for x in e.errors:
                echo(str(x), err=True)
            echo(f"{path}: {len(e.errors)} error(s)", err=True)
        sys.exit(1)


@click.group()
def policy() -> None:
    """Check, test, evaluate and diff policy sets (policies.yaml)."""


@policy.command()
@click.argument("path", default=DEFAULT_PATH, type=click.Path())
@OUTPUT
def check(path: str, output: str) -> None:
    """Validate PATH (a file or a folder): schema, names, approvers, CEL."""
    _sandboxed(["check", "--output", output, "--", path])
    ps = _load(path, output)
    info = {"ok": True, "path": path, "policy_version": ps.version, "users": len(ps.users),
            "groups": len(ps.groups), "resources": len(ps.resources), "rules": len(ps.rules),
            "tests": len(ps.tests)}
    info["warnings"] = [{"file": w.file, "line": w.line, "col": w.col, "code": w.code,
                         "message": w.message} for w in ps.warnings]
    if output == "json":
        _emit_json(info)
    else:
        for w in ps.warnings:
            echo(f"{w} (warning)", err=True)
        echo(f"{path}: ok: {info['users']} users, {info['resources']} resources, "
                   f"{info['rules']} rules, {info['tests']} tests ({ps.version})")


@policy.command()
@click.argument("path", default=DEFAULT_PATH, type=click.Path())
@OUTPUT
def test(path: str, output: str) -> None:
    """Run the `tests:` of PATH; exit 1 when one fails."""
    _sandboxed(["test", "--output", output, "--", path])
    ps = _load(path, output)
    started = time.perf_counter()
    results = ps.run_tests()
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.passed]
    if output == "json":
        _emit_json({"passed": len(results) - len(failed), "failed": len(failed),
                    "policy_version": ps.version,
                    "results": [{"name": r.name, "passed": r.passed, "where": r.where(),
                                 "failures": r.failures, "expected": r.expected,
                                 "got": r.decision.to_json()} for r in results]})
    else:
        for r in results:
            echo_styled(Styled("PASS", "green") if r.passed else Styled("FAIL", "red"), f" {r.name}")
        for r in failed:
            echo()
            echo_styled(Styled(f"{r.where()}: test `{r.name}` failed", "bold red"))
            for f in r.failures:
                echo(f"  {f}")
            echo(f"  got: {summary(r.decision)}")
        echo(f"\n{len(results) - len(failed)} passed, {len(failed)} failed in {elapsed:.2f}s", keep_newlines=True)
    sys.exit(1 if failed else 0)


def _read_request(request: str | None, request_file: str | None) -> PolicyRequest:
    if (request is None) == (request_file is None):
        _fail("give exactly one of --request '{...}' or --request-file FILE")
    try:
        text = request if request is not None else Path(request_file).read_text(encoding="utf-8")  # type: ignore[arg-type]
    except OSError as e:
        _fail(f"cannot read {request_file}: {e.strerror}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_REQUEST_JSON_BYTES:
        _fail(f"the request is {size} bytes, above the limit of {MAX_REQUEST_JSON_BYTES}")
    sink = Sink()
    where = request_file or "--request"
    node = compose(where, text, sink)  # JSON is YAML, so both work; aliases and depth bounded
    data = Reader(where, sink).plain(node, "request") if node is not None else None
    if sink.errors:
        _fail(f"bad request: {sink.errors[0]}")
    try:
        return PolicyRequest.from_mapping(data, default_time=datetime.now(UTC))
    except RequestError as e:
        _fail(f"bad request: {e}")


@policy.command("eval")
@click.argument("path", default=DEFAULT_PATH, type=click.Path())
@click.option("--request", "-r", help="The request as JSON (or YAML); `time` defaults to now.")
@click.option("--request-file", "-f", type=click.Path(), help="A file holding the request.")
@OUTPUT
def eval_(path: str, request: str | None, request_file: str | None, output: str) -> None:
    """Print the decision PATH gives for one request."""
    _sandboxed(["eval", "--output", output,
                *([f"--request={request}"] if request is not None else []),
                *([f"--request-file={request_file}"] if request_file is not None else []), "--", path])
    req = _read_request(request, request_file)
    ps = _load(path, output)
    d = ps.decide(req)
    if output == "json":
        _emit_json(d.to_json())
        return
    rows: list[list[Any]] = [["request", request_label(req)],
                             ["effect", Styled("allow", "green") if d.allowed else Styled("deny", "red")]]
    if d.approval is not None:
        rows.append(["approval", d.approval.mode])
        for i, lv in enumerate(d.approval.levels, 1):
            rows.append([f"  level {i}", f"{lv.min} of {', '.join(lv.approvers)}"])
        if d.approval.review:
            rows.append(["  review", ", ".join(d.approval.review)])
        rows.append(["max duration", format_duration(d.max_duration) if d.max_duration else "none"])
        rows.append(["max extensions", str(d.max_extensions)])
        rows.append(["session", ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in d.session.to_json().items())])
    rows.append(["rules", ", ".join(d.rules) or "-"])
    if d.message:
        rows.append(["message", d.message])
    rows.extend(["error", e] for e in d.errors)
    rows.append(["policy", d.policy_version])
    print_table(None, [Col("field", no_wrap=True), Col("value", overflow="fold")], rows, show_header=False,
                box=False)


@policy.command()
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--requests", "requests_file", required=True, type=click.Path(),
              help="Recorded requests, one JSON object per line.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="text table, Markdown for a pull-request comment, or JSON.")
@OUTPUT
def diff(old: str, new: str, requests_file: str, fmt: str, output: str) -> None:
    """Replay recorded requests through OLD and NEW; exit 3 when a decision changes, 0 when none."""
    _sandboxed(["diff", f"--requests={requests_file}", "--format", fmt, "--output", output, "--", old, new])
    if output == "json":
        fmt = "json"
    try:
        requests = read_requests(requests_file)
    except RequestError as e:
        _fail(str(e))
    old_ps = _load(old, "json" if fmt == "json" else "text")
    new_ps = _load(new, "json" if fmt == "json" else "text")
    changes = diff_sets(old_ps, new_ps, requests)
    if fmt == "json":
        _emit_json({"old_version": old_ps.version, "new_version": new_ps.version,
                    "requests": len(requests), "changed": len(changes),
                    "changes": [c.to_json() for c in changes]})
    elif fmt == "markdown":
        click.echo(visible(to_markdown(changes, old_ps, new_ps, len(requests)), keep_newlines=True), nl=False)
    elif changes:
        print_table(f"{len(changes)} of {len(requests)} decision(s) change", ["line", "request", "old", "new"],
                    ([str(c.line), request_label(c.request), summary(c.old), summary(c.new)] for c in changes))
    else:
        echo(f"no decision changes ({len(requests)} request(s) replayed)")
    sys.exit(exits.DECISIONS_CHANGED if changes else exits.OK)
