"""`step_up:` in policies.yaml: read, refused with its place, combined, and versioned only when used."""
from __future__ import annotations

from datetime import timedelta

import pytest

from policy.errors import PolicyLoadError
from policy.policyset import load_policy_text
from policy.stepup import StepUp, combine

BASE = """version: 1
users:
  alice: {groups: [sre]}
resources:
  web:
    kind: ssh
    address: 10.0.0.1:22
    host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    labels: {env: dev}
    logins: [root]
rules:
  - name: dev
    when: resource.labels.env == "dev"
    approval: auto
"""


def test_step_up_is_read_and_changes_the_version() -> None:
    plain = load_policy_text(BASE, run_tests=False)
    with_step = load_policy_text(BASE + "    step_up: {max_age: 15m, mfa: true}\n", run_tests=False)
    assert with_step.rules[0].step_up == StepUp(("approve", "activate"), timedelta(minutes=15), True)
    assert plain.rules[0].step_up is None
    assert plain.version != with_step.version


@pytest.mark.parametrize(("field", "message"), [
    ("{}", "give `max_age`, `mfa: true` or both"),
    ("{for: [deploy], mfa: true}", "unknown action `deploy`"),
    ("{mfa: true, when: now}", "when"),
])
def test_bad_step_up_is_refused_with_its_place(field: str, message: str) -> None:
    with pytest.raises(PolicyLoadError) as e:
        load_policy_text(BASE + f"    step_up: {field}\n", run_tests=False)
    text = str(e.value)
    assert message in text and "policies.yaml:15:" in text


def test_step_ups_combine_to_the_strictest() -> None:
    need = combine([("a", StepUp(("approve",), timedelta(minutes=30), False)),
                    ("b", StepUp(("approve", "activate"), timedelta(minutes=10), False)),
                    ("c", StepUp(("activate",), None, True)), ("d", None)], "approve")
    assert need is not None and need.max_age == timedelta(minutes=10) and not need.mfa and need.rules == ("a", "b")
    activate = combine([("c", StepUp(("activate",), None, True))], "activate")
    assert activate is not None and activate.mfa and activate.max_age is None
    assert combine([("a", StepUp(("approve",), None, True))], "activate") is None
