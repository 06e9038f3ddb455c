"""engine.py: refusals that need no rule (precheck), and deny wins over any allow (combine)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy import PolicyRequest, load_policy_text
from policy.engine import precheck
from policy.model import Resource, User

USERS = {"ann": User("ann")}
RESOURCES = {"h": Resource("h", "ssh", "h:22", logins=("ops", "root")),
             "d": Resource("d", "postgres", "d:5432", roles=("ro",))}


def _req(resource: str, login: str = "", role: str = "", hours: int = 1) -> PolicyRequest:
    return PolicyRequest(user="ann", resource=resource, login=login, role=role, duration=timedelta(hours=hours),
                         time=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("req,message", [
    (_req("h", "ops"), None),
    (_req("d", role="ro"), None),
    (_req("x", "ops"), "unknown resource `x`"),
    (_req("h", "ops", "ro"), "`h` is an ssh host: ask for a login, not a role"),
    (_req("h"), "`h` needs a login (one of ops, root)"),
    (_req("h", "zz"), "login `zz` is not offered on `h` (one of ops, root)"),
    (_req("d", "ops", "ro"), "`d` is a database: ask for a role, not a login"),
    (_req("d"), "`d` needs a role (one of ro)"),
    (_req("d", role="rw"), "role `rw` is not offered on `d` (one of ro)"),
    (_req("h", "ops", hours=24 * 400), "requested duration must be between 1s and 8784h"),
])
def test_precheck(req: PolicyRequest, message: str | None) -> None:
    d = precheck(req, USERS, RESOURCES, "v")
    assert (d.message if d else None) == message
    assert d is None or (d.effect, d.rules, d.approval) == ("deny", [], None)


def test_deny_wins_over_every_allow() -> None:
    ps = load_policy_text("""\
version: 1
users: {ann: {}}
resources: {h: {kind: ssh, address: "h:22", logins: [ops]}}
rules:
  - {name: open, when: 'true', approval: auto}
  - {name: closed, when: 'request.login == "ops"', effect: deny, message: closed}
  - {name: also-no, when: 'true', effect: deny}
""")
    d = ps.decide(PolicyRequest.from_mapping({"user": "ann", "resource": "h", "login": "ops", "duration": "1h",
                                              "time": "2026-01-01T00:00:00Z"}))
    assert (d.effect, d.rules, d.message) == ("deny", ["closed", "also-no"], "closed; denied by rule `also-no`")
