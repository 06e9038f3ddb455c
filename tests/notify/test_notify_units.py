"""Notifications in one process: config refusals, the policy field, the outbox written in the
change's own transaction, routing, messages and their bounds, the signature, giving up."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controlplane.config import ConfigError, build_config
from controlplane.core import AccessCore, StaticPolicy
from controlplane.errors import JitError
from controlplane.notify import Notifier, parse_notify
from controlplane.notify.channels import sign
from controlplane.notify.config import NotifyConfigError
from controlplane.notify.directory import email_of, valid_address
from controlplane.notify.messages import MAX_BODY, render
from controlplane.store import SqlStore
from controlplane.store.outbox import rows_for
from policy import load_policy_set
from policy.errors import PolicyLoadError
from tests.notify.receivers import free_port

POLICIES = Path(__file__).with_name("policies.yaml")
ENV = {"HOOK_URL": "http://127.0.0.1:9/hook", "HOOK_KEY": "k3y", "CHAT_URL": "https://hooks.example.test/T0/B0/xyz"}


def _cfg(**over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"channels": {
        "hooks": {"type": "webhook", "url": "env:HOOK_URL", "secret": "env:HOOK_KEY"},
        "chat": {"type": "slack", "url": "env:CHAT_URL"}}}
    cfg.update(over)
    return cfg


# -- server.yaml ---------------------------------------------------------------------------

@pytest.mark.parametrize(("cfg", "error"), [
    ({"channels": {"m": {"type": "email", "host": "h", "from": "a@b.c", "username": "u", "password": "hunter2"}}},
     "must be `env:NAME` or `file:PATH`"),
    ({"channels": {"c": {"type": "slack", "url": "https://hooks.example.test/secret"}}}, "must be `env:NAME`"),
    ({"channels": {"c": {"type": "slack", "url": "env:NOPE"}}}, "environment variable `NOPE` is not set"),
    ({"channels": {"h": {"type": "webhook", "url": "env:HOOK_URL"}}}, "a webhook needs `secret`"),
    ({"channels": {"h": {"type": "sms", "url": "env:HOOK_URL"}}}, "type must be one of"),
    ({"channels": {"Bad Name": {"type": "slack", "url": "env:CHAT_URL"}}}, "a channel name is"),
    ({"channels": {"c": {"type": "slack", "url": "env:CHAT_URL", "token": "x"}}}, "unknown key `token`"),
    (_cfg(approvers=["pager"]), "unknown channel `pager`"),
    (_cfg(retries=3), "unknown key `retries`"),
    (_cfg(timeout_seconds=600), "timeout_seconds must be from"),
    ({"channels": {"m": {"type": "email", "host": "h", "from": "a@b.c", "username": "u",
                         "password": "env:HOOK_KEY", "starttls": False}}}, "only sent over STARTTLS"),
    ({"channels": {"m": {"type": "email", "host": "h", "from": "x@y.z\r\nBcc: all@y.z"}}}, "one plain address"),
])
def test_bad_notify_config_is_refused_at_start(cfg: dict[str, Any], error: str) -> None:
    with pytest.raises(NotifyConfigError, match=error.replace("`", ".").replace("(", ".")):
        parse_notify(cfg, ENV)


def test_secrets_come_from_files_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("https://hooks.example.test/from-a-file\n")
    cfg = parse_notify({"channels": {"c": {"type": "slack", "url": f"file:{tmp_path / 'url'}"}}}, {})
    url = cfg.channels["c"].url
    assert url is not None and url.value == "https://hooks.example.test/from-a-file"
    assert "from-a-file" not in repr(cfg) and "from-a-file" not in str(url)
    with pytest.raises(NotifyConfigError, match="cannot read"):
        parse_notify({"channels": {"c": {"type": "slack", "url": f"file:{tmp_path / 'missing'}"}}}, {})


def test_server_yaml_refuses_a_bad_notify_section(tmp_path: Path) -> None:
    (tmp_path / "server.yaml").write_text("notify: {channels: {c: {type: slack, url: 'https://x.test/y'}}}\n")
    with pytest.raises(ConfigError, match="never written in the config"):
        build_config(config_file=tmp_path / "server.yaml", policies=POLICIES, data_dir=tmp_path)


def test_requester_defaults_to_email_channels_and_approvers_to_all() -> None:
    cfg = parse_notify({"channels": {
        "chat": {"type": "slack", "url": "env:CHAT_URL"},
        "mail": {"type": "email", "host": "smtp.test", "from": "j@x.test"}}}, ENV)
    assert cfg.requester_channels == ("mail",) and cfg.approver_channels == ("chat", "mail")


# -- policies.yaml: the rule field ------------------------------------------------------

def _policy_with(tmp_path: Path, rule_extra: str, effect: str = "") -> Path:
    text = POLICIES.read_text().replace(
        "    notify: [hooks]          # the DBAs' approvers are told on the signed webhook only\n", rule_extra)
    if effect:
        text = text.replace("  - name: dba-owner\n", f"  - name: dba-owner\n    effect: {effect}\n    message: no\n")
        text = text.replace("    approval: {levels: [{approvers: [owner]}]}\n", "", 1)
        text = text.replace("    max_duration: 1h\n\n  - name: break-glass", "\n  - name: break-glass")
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("extra", "effect", "error"), [
    ("    notify: [Bad Channel]\n", "", "notify channel `Bad Channel` must be"),
    ("    notify: [" + ", ".join(f"c{i}" for i in range(17)) + "]\n", "", "at most 16"),
    ("    notify: hooks\n", "", "notify"),
    ("    notify: [hooks]\n", "deny", "a deny rule takes no `notify`"),
])
def test_a_bad_notify_field_is_refused_with_its_place(tmp_path: Path, extra: str, effect: str, error: str) -> None:
    with pytest.raises(PolicyLoadError) as exc:
        load_policy_set(_policy_with(tmp_path, extra, effect))
    text = "\n".join(str(e) for e in exc.value.errors)
    assert error in text and "p.yaml:" in text


def test_notify_is_part_of_the_policy_version(tmp_path: Path) -> None:
    with_it = load_policy_set(POLICIES)
    without = load_policy_set(_policy_with(tmp_path, ""))
    assert with_it.version != without.version
    assert next(r for r in with_it.rules if r.name == "dba-owner").notify == ("hooks",)


# -- the outbox in the change's transaction -------------------------------------------

@pytest.fixture
def core(tmp_path: Path) -> Iterator[AccessCore]:
    store = SqlStore.open_sqlite(tmp_path / "jitgate.db")
    yield AccessCore(store, StaticPolicy(load_policy_set(POLICIES)), admins={"ada"})
    store.close()


def _installed(core: AccessCore, **over: Any) -> Notifier:
    n = Notifier(core, parse_notify(_cfg(**over), ENV))
    n.install()
    return n


def test_rows_commit_with_the_change_and_not_without_it(core: AccessCore) -> None:
    _installed(core, approvers=["chat"], requester=["hooks"])
    rec, _ = core.requests.create_request("alice", "web-prod-01", login="deploy", duration=timedelta(minutes=30),
                                          reason="deploy")
    with core.ledger.store.read() as tx:
        rows = rows_for(tx, rec.id)
    assert sorted((r.kind, r.channel, r.level) for r in rows) == [("reminder", "chat", -1), ("waiting", "chat", 0)]
    assert all(r.key.startswith("jg-") and r.state == "pending" for r in rows)
    # A refused vote (nobody approves their own request) rolls back: no row is owed.
    with pytest.raises(JitError):
        core.approvals.approve("alice", rec.id)
    with core.ledger.store.read() as tx:
        assert len(rows_for(tx, rec.id)) == 2
    # A routed rule: its approvers on `hooks` only; the requester's approval on `hooks`.
    db, _ = core.requests.create_request("alice", "orders-db", role="readonly", duration=timedelta(minutes=30),
                                         reason="report")
    core.approvals.approve("owen", db.id)
    with core.ledger.store.read() as tx:
        got = sorted((r.kind, r.channel) for r in rows_for(tx, db.id))
    assert got == [("approved", "hooks"), ("expiry_warning", "hooks"), ("reminder", "hooks"), ("waiting", "hooks")]


def test_a_rule_naming_an_unknown_channel_falls_back_to_the_defaults(core: AccessCore,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    cfg = {"channels": {"chat": {"type": "slack", "url": "env:CHAT_URL"}}}
    n = Notifier(core, parse_notify(cfg, ENV))  # no `hooks` channel configured
    n.install()
    db, _ = core.requests.create_request("alice", "orders-db", role="readonly", duration=timedelta(minutes=30),
                                         reason="report")
    with core.ledger.store.read() as tx:
        assert {r.channel for r in rows_for(tx, db.id)} == {"chat"}
    assert "names notify channel `hooks`" in caplog.text


def test_an_unreachable_channel_is_retried_then_given_up_without_leaking_secrets(core: AccessCore) -> None:
    env = {**ENV, "HOOK_URL": f"http://127.0.0.1:{free_port()}/hook?token=sekrit-token"}
    n = Notifier(core, parse_notify(_cfg(max_attempts=3, retry_base_seconds=0.01, retry_max_seconds=0.02,
                                         poll_seconds=0.05, approvers=["hooks"]), env))
    n.install()
    n.start()
    try:
        rec, _ = core.requests.create_request("alice", "web-prod-01", login="deploy",
                                              duration=timedelta(minutes=30), reason="deploy")
        deadline = time.monotonic() + 10
        while True:
            with core.ledger.store.read() as tx:
                row = next(r for r in rows_for(tx, rec.id) if r.kind == "waiting")
            if row.state != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    finally:
        n.stop()
    assert row.state == "dead" and row.attempts == 3
    assert "ConnectError" in row.last_error and "sekrit" not in row.last_error


# -- messages, addresses, signature ----------------------------------------------------

def test_messages_are_bounded_and_show_user_text_literally(core: AccessCore) -> None:
    rec, _ = core.requests.create_request("alice", "web-prod-01", login="deploy", duration=timedelta(minutes=30),
                                          reason="<!channel> <https://evil.test|click> \x1b[2K" + "x" * 1900)
    msg = render("waiting", "jg-1-waiting-chat", rec, None, 0, ["bob"], {})
    slack = json.dumps(msg.slack())
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack and "\\\\x1b" in slack
    assert len(slack.encode()) <= MAX_BODY and len(msg.text().encode()) <= MAX_BODY
    assert f"jitgate approve {rec.id}" in msg.text() and "…" in msg.text()  # the reason was clipped
    hook = msg.webhook(rec.created_at)
    assert hook["request"]["id"] == rec.id and hook["recipients"] == ["bob"]
    assert len(json.dumps(hook, ensure_ascii=False).encode()) <= MAX_BODY


def test_one_email_lookup_refuses_what_is_not_one_plain_address(tmp_path: Path) -> None:
    ps = load_policy_set(POLICIES)
    assert email_of(ps, "bob") == "bob@example.test"
    assert email_of(ps, "sara") is None and email_of(ps, "nobody") is None
    for bad in ("a@b.c\r\nBcc: x@y.z", "Bob <bob@x.test>", "a@b.c,d@e.f", "x" * 250 + "@b.cc", 42):
        assert not valid_address(bad)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"jg-1"}'
    want = hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k3y", "1700000000", body) == f"v1={want}"
    assert sign("k3y", "1700000001", body) != f"v1={want}"


def test_a_signed_in_persons_verified_email_is_used_when_the_policies_name_none(core: AccessCore) -> None:
    from datetime import UTC, datetime

    from controlplane.notify.directory import directory_lookup
    from controlplane.store.people import Person, save_person

    now = datetime.now(UTC)
    with core.ledger.store.write() as tx:
        save_person(tx.conn, Person("sara", "sara@idp.test", (), "https://idp.test", "s1", now, now, ()))
        save_person(tx.conn, Person("bob", "bob@idp.test", (), "https://idp.test", "b1", now, now, ()))
        save_person(tx.conn, Person("eve", "eve@x.test\r\nBcc: all@x.test", (), "https://idp.test", "e1", now,
                                    now, ()))
    lookup, ps = directory_lookup(core.ledger.store), load_policy_set(POLICIES)
    assert lookup(ps, "sara") == "sara@idp.test"  # no address in policies.yaml: the sign-in's
    assert lookup(ps, "bob") == "bob@example.test"  # policies.yaml wins
    assert lookup(ps, "eve") is None and lookup(ps, "nobody") is None
