"""Fuzzing the loader: random YAML, random CEL, mutated real files.

Whatever comes in, the loader returns a PolicySet or raises PolicyLoadError
whose errors each point at a file position, never anything else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import PolicyLoadError, PolicySet, load_policy_text
from policy.loader import RESOURCE_FIELDS, RULE_FIELDS, TOP_FIELDS, USER_FIELDS

EXAMPLE = (Path(__file__).resolve().parents[2] / "policies.yaml").read_text()
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load(text: str) -> None:
    try:
        ps = load_policy_text(text, "fuzz.yaml")
    except PolicyLoadError as e:
        assert e.errors, "a refusal lists at least one error"
        for err in e.errors:
            assert err.code.startswith("policy.") and err.code != "policy.internal", err
            assert err.file == "fuzz.yaml" and err.line >= 1 and err.col >= 1, err
            assert err.message and "Traceback" not in err.message
            assert str(err).startswith(f"fuzz.yaml:{err.line}:{err.col}: ")
        return
    assert isinstance(ps, PolicySet) and ps.version.startswith("sha256:")


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    _load(text)


KEYS = st.sampled_from(TOP_FIELDS + USER_FIELDS + RESOURCE_FIELDS + RULE_FIELDS + ("levels", "approvers", "min", "x"))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["1h", "auto", "break_glass", "ssh", "h:22", "prod"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, st.text(max_size=5)), inner, max_size=4)),
    max_leaves=20)
CEL_TOKENS = st.sampled_from(
    [
        "request",
        "user",
        "resource",
        "history",
        "now",
        ".",
        "labels",
        "env",
        "==",
        '"x"',
        "&&",
        "||",
        "!",
        "(",
        ")",
        "[",
        "]",
        "in",
        "has(",
        "true",
        "1",
        "?",
        ":",
        'getHours("UTC")',
        'duration("1h")',
        ",",
        "size(",
        "groups",
        'exists(g, g == "a")',
        "1/0",
        '"\\u00e9"',
    ]
)


@FUZZ
@given(users=st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=3),
       resources=st.dictionaries(st.text(min_size=1, max_size=6), VALUES, max_size=3),
       whens=st.lists(st.lists(CEL_TOKENS, max_size=8).map(" ".join), max_size=4),
       extra=st.dictionaries(KEYS, VALUES, max_size=3))
def test_random_structures_and_cel(users: dict[str, Any], resources: dict[str, Any],
                                   whens: list[str], extra: dict[str, Any]) -> None:
    doc: dict[str, Any] = {"version": 1, "users": users, "resources": resources,
                           "rules": [{"name": f"r{i}", "when": w, "approval": "auto"} for i, w in enumerate(whens)]}
    doc.update({k: v for k, v in extra.items() if k not in ("version",)})
    _load(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(st.integers(0, len(EXAMPLE) - 1), st.integers(0, 20), st.text(max_size=3))
def test_mutated_example(pos: int, cut: int, insert: str) -> None:
    _load(EXAMPLE[:pos] + insert + EXAMPLE[pos + cut:])


def test_hostile_yaml_is_refused_cleanly() -> None:
    for text in [
        "a: &x [*x]",
        "[" * 1200,
        "{" * 600 + "}" * 600,
        "!!python/object:os.system {}",
        "version: 1\nusers: !!binary aGVsbG8=",
        "version: 1\n---\nversion: 1",
        "\x00",
        "version: 1\nrules:\n  - when: " + "(" * 600 + "true" + ")" * 600 + "\n    name: deep\n    approval: auto",
    ]:
        _load(text)
