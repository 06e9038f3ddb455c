"""Notifications end to end: a real `jitgate server` (tests/cluster.py) with a real SMTP server
(aiosmtpd: STARTTLS and AUTH required) and real HTTP receivers (a Slack-compatible one and a
signed generic webhook). One stack for the module; each test makes its own requests.

Channels: `mail` (email) and `chat` (slack) tell approvers by default; the `dba-owner` rule
routes its approvers to `hooks` (the signed webhook); the requester is told on `mail` and `hooks`.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from controlplane.store import open_store
from controlplane.store.outbox import rows_for
from jitgate.v1 import access_pb2, types_pb2
from tests.cluster import ControlPlane
from tests.notify.receivers import WAIT, HttpReceiver, SmtpServer

POLICIES = Path(__file__).with_name("policies.yaml")


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.smtp = SmtpServer(tmp).start()
        self.chat = HttpReceiver().start()
        self.hooks = HttpReceiver().start()
        self.env = {"T_SMTP_PASSWORD": self.smtp.password, "T_CHAT_URL": self.chat.url,
                    "T_HOOK_URL": self.hooks.url, "T_HOOK_KEY": self.hooks.secret}
        notify = {
            "channels": {
                "mail": {"type": "email", "host": "127.0.0.1", "port": self.smtp.port, "from": "jitgate@example.test",
                         "username": self.smtp.user, "password": "env:T_SMTP_PASSWORD", "ca_file": str(self.smtp.cert)},
                "chat": {"type": "slack", "url": "env:T_CHAT_URL"},
                "hooks": {"type": "webhook", "url": "env:T_HOOK_URL", "secret": "env:T_HOOK_KEY"},
            },
            "approvers": ["mail", "chat"], "requester": ["mail", "hooks"],
            # Short waits so retries happen within a test (production defaults: README).
            "timeout_seconds": 1, "retry_base_seconds": 0.2, "retry_max_seconds": 1, "lease_seconds": 2,
            "poll_seconds": 0.2, "reminder_before": "5m",
        }
        # No duration model: each start would load LightGBM (seconds) in the server and the sender.
        self.cp = ControlPlane(tmp / "cp", policies=POLICIES, config={"notify": notify, "recommender": False},
                               env=self.env)

    def close(self) -> None:
        self.cp.stop()
        self.smtp.stop()
        self.chat.stop()
        self.hooks.stop()

    def ask(self, user: str, resource: str, **kw: Any) -> access_pb2.AccessRequest:
        kw.setdefault("duration", Duration(seconds=1800))
        kw.setdefault("reason", "rotate the TLS certificate")
        return self.cp.client(user).access.CreateRequest(
            access_pb2.CreateRequestRequest(resource=resource, **kw)).request

    def settled(self, rid: str, kind: str, channel: str, timeout: float = WAIT) -> Any:
        """The outbox row once the worker has recorded its outcome (polls the store)."""
        deadline = time.monotonic() + timeout
        while True:
            row = next(r for r in self.outbox(rid) if r.kind == kind and r.channel == channel)
            if row.state != "pending" or time.monotonic() > deadline:
                return row
            time.sleep(0.05)

    def kill_all(self) -> None:
        """kill -9 of the control plane: the server and its notification sender, sender first
        (killed alone, the server's death would let the sender finish its sends in flight)."""
        assert self.cp.proc is not None
        pid = self.cp.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert children, "the notification sender process is missing"
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        self.cp.kill()

    def outbox(self, rid: str) -> list[Any]:
        store = open_store(str(self.cp.data.db_path))
        try:
            with store.read() as tx:
                return rows_for(tx, rid)
        finally:
            store.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("notify"))
    try:
        yield s
    finally:
        s.close()


def _to(mails: list[Any]) -> list[list[str]]:
    return [sorted(m.recipients) for m in mails]


def test_each_level_then_the_requester_is_told(stack: Stack) -> None:
    req = stack.ask("alice", "web-prod-01", login="deploy", reason="fix <@U123> & `rm -rf` \u202eevil")
    assert req.state == types_pb2.REQUEST_STATE_PENDING
    # Level 1 (manager = bob) by email and on chat, before anyone acts.
    stack.smtp.wait(lambda ms: any(m.message["X-Jitgate-Request"] == req.id for m in ms))
    mails = stack.smtp.for_request(req.id)
    assert _to(mails) == [["bob@example.test"]]
    mail = mails[0]
    assert mail.tls and mail.authenticated
    assert mail.message["Message-ID"].startswith("<jg-") and mail.message["Message-ID"].endswith("-mail@jitgate>")
    body = mail.message.get_content()
    assert f"jitgate approve {req.id}" in body and "level 1 of 2" in body
    assert "\\u202e" in body and "\u202e" not in body  # user text shown literally
    assert "Requester's last 90 days: 0 granted, 0 denied" in body
    chat = stack.chat.wait(lambda hs: any(req.id in h.body.decode() for h in hs))
    blocks = next(h.json() for h in chat if req.id in h.body.decode())
    text = str(blocks)
    assert blocks["blocks"][0]["type"] == "header"
    assert f"jitgate approve {req.id}" in text and "Recommended duration" in text
    assert "&lt;@U123&gt; &amp;" in text and "<@U123>" not in text  # no mention or link smuggled in

    # Level 2 opens when bob approves: security (sam by email; sara has no address).
    stack.cp.client("bob").access.Approve(access_pb2.DecideRequest(id=req.id))
    stack.smtp.wait(lambda ms: len([m for m in ms if m.message["X-Jitgate-Request"] == req.id]) >= 2)
    second = stack.smtp.for_request(req.id)[1]
    assert sorted(second.recipients) == ["sam@example.test"]
    assert "level 2 of 2" in second.message.get_content()

    # Approved: the requester is told by email and on the signed webhook.
    stack.cp.client("sam").access.Approve(access_pb2.DecideRequest(id=req.id))
    stack.smtp.wait(lambda ms: any(m.message["Subject"].endswith("was approved") and
                                   m.message["X-Jitgate-Request"] == req.id for m in ms))
    assert _to(stack.smtp.for_request(req.id))[-1] == ["alice@example.test"]
    hits = stack.hooks.wait(lambda hs: any(h.json()["kind"] == "approved" and h.json()["request"]["id"] == req.id
                                           for h in hs))
    hit = next(h for h in hits if h.json()["request"]["id"] == req.id)
    assert hit.headers["idempotency-key"] == hit.json()["id"]
    assert stack.hooks.bad_signatures == 0
    rows = stack.outbox(req.id)
    kinds = sorted((r.kind, r.channel) for r in rows)
    # the reminder (due 5 min before the 1 h timeout) was written with the request and is skipped now
    assert ("reminder", "mail") in kinds and ("expiry_warning", "mail") in kinds
    for kind in ("waiting", "level", "approved"):
        assert stack.settled(req.id, kind, "mail").state == "sent"


def test_a_rule_routes_its_approvers_to_its_own_channel(stack: Stack) -> None:
    req = stack.ask("alice", "orders-db", role="readonly")
    hits = stack.hooks.wait(lambda hs: any(h.json()["request"]["id"] == req.id for h in hs))
    hit = next(h for h in hits if h.json()["request"]["id"] == req.id)
    body = hit.json()
    assert body["kind"] == "waiting" and body["recipients"] == ["owen"]
    assert body["request"]["rules"] == ["dba-owner"] and body["command"].startswith(f"jitgate approve {req.id}")
    assert hit.headers["x-jitgate-signature"].startswith("v1=") and stack.hooks.bad_signatures == 0
    # Routed away from the defaults: no mail and no chat post about it.
    assert {r.channel for r in stack.outbox(req.id) if r.kind == "waiting"} == {"hooks"}
    assert stack.smtp.for_request(req.id) == [] and stack.chat.for_request(req.id) == []


def test_break_glass_tells_the_reviewers_at_once(stack: Stack) -> None:
    req = stack.ask("alice", "web-prod-01", login="deploy", emergency=True, reason="prod is down")
    assert req.state == types_pb2.REQUEST_STATE_ACTIVE
    stack.smtp.wait(lambda ms: any(m.message["X-Jitgate-Request"] == req.id for m in ms))
    mail = stack.smtp.for_request(req.id)[0]
    assert mail.message["Subject"].startswith("Break-glass used: alice")
    assert sorted(mail.recipients) == ["sam@example.test"]
    assert f"jitgate review {req.id}" in mail.message.get_content()
    stack.chat.wait(lambda hs: any(req.id in h.body.decode() and "Break-glass" in h.body.decode() for h in hs))


def test_denial_and_revocation_tell_the_requester(stack: Stack) -> None:
    denied = stack.ask("alice", "web-prod-01", login="deploy")
    stack.cp.client("bob").access.Deny(access_pb2.DecideRequest(id=denied.id, comment="use staging"))
    stack.smtp.wait(lambda ms: any(m.message["Subject"] == f"Your request {denied.id} was denied" for m in ms))
    mail = next(m for m in stack.smtp.for_request(denied.id) if "denied" in m.message["Subject"])
    assert mail.recipients == ["alice@example.test"] and "use staging" in mail.message.get_content()

    granted = stack.ask("alice", "web-dev-01", login="deploy")  # auto: nobody to tell
    assert granted.state == types_pb2.REQUEST_STATE_ACTIVE
    stack.cp.client("admin").access.Revoke(access_pb2.RevokeRequest(id=granted.id, reason="incident over"))
    stack.smtp.wait(lambda ms: any(m.message["Subject"] == f"Your request {granted.id} was revoked" for m in ms))
    assert [r.kind for r in stack.outbox(granted.id) if r.channel == "mail"] == ["expiry_warning", "revoked"]


def test_a_failing_receiver_is_retried_and_nothing_is_lost(stack: Stack) -> None:
    hooks = stack.hooks
    # Answers 500: the request is decided at once anyway; the message is retried until it lands.
    hooks.mode = "500"
    before = len(hooks.hits)
    a = stack.ask("alice", "orders-db", role="readonly", reason="report A")
    hooks.wait(lambda _: len(hooks.hits) >= before + 3)  # two retries at least
    hooks.mode = "ok"
    hooks.wait(lambda hs: any(h.json()["request"]["id"] == a.id for h in hs))
    row = stack.settled(a.id, "waiting", "hooks")
    assert row.state == "sent" and row.attempts >= 3 and "HTTP 500" in row.last_error

    # Down (connection refused), then up again on the same port.
    hooks.stop()
    b = stack.ask("alice", "orders-db", role="readonly", reason="report B")
    c = stack.ask("alice", "orders-db", role="readonly", reason="report C")
    assert b.state == c.state == types_pb2.REQUEST_STATE_PENDING  # decisions do not wait for the channel
    hooks.start()
    hooks.wait(lambda hs: {b.id, c.id} <= {h.json()["request"]["id"] for h in hs})

    # Slow (answers after 1.5 s, the timeout is 1 s): given up per attempt, retried, delivered.
    hooks.mode, hooks.delay = "slow", 1.5
    d = stack.ask("alice", "orders-db", role="readonly", reason="report D")
    hooks.wait(lambda hs: any(h.json()["request"]["id"] == d.id for h in hs))
    hooks.mode = "ok"
    # Each notification is one idempotency key; a key seen more than once is a retry to dedupe.
    for rid in (a.id, b.id, c.id, d.id):
        keys = {h.headers["idempotency-key"] for h in hooks.for_request(rid)}
        assert len(keys) == 1, (rid, keys)


def test_kill_9_between_write_and_send_delivers_once_after_restart(stack: Stack) -> None:
    hooks = stack.hooks
    hooks.mode = "ok"
    # Written, not sent: the receiver is down when the control plane dies.
    hooks.stop()
    a = stack.ask("alice", "orders-db", role="readonly", reason="written then killed")
    assert [r.state for r in stack.outbox(a.id) if r.channel == "hooks" and r.kind == "waiting"] == ["pending"]
    stack.kill_all()
    hooks.start()
    stack.cp.restart()
    hooks.wait(lambda hs: any(h.json()["request"]["id"] == a.id for h in hs))

    # Sent, not yet acknowledged: killed while the receiver holds the request.
    hooks.mode, hooks.delay = "slow", 0.8
    b = stack.ask("alice", "orders-db", role="readonly", reason="sent then killed")
    hooks.wait_arrived(lambda hs: any(b.id in h.body.decode() for h in hs))
    stack.kill_all()  # the receiver holds the request: the control plane never hears its answer
    hooks.mode = "ok"
    stack.cp.restart()
    hooks.wait(lambda hs: len([h for h in hs if b.id in h.body.decode()]) >= 2)
    for rid in (a.id, b.id):
        keys = [h.headers["idempotency-key"] for h in hooks.for_request(rid)]
        assert len(set(keys)) == 1, keys  # one notification, whatever the number of deliveries
    assert len(hooks.for_request(b.id)) >= 2  # delivered again after the crash: at-least-once
    assert stack.settled(b.id, "waiting", "hooks").state == "sent"


def test_no_secret_reaches_the_log(stack: Stack) -> None:
    log = stack.cp.log()
    assert "notification" in log  # the worker does log its deliveries
    for secret in (stack.smtp.password, stack.chat.url, stack.hooks.url, stack.hooks.secret):
        assert secret not in log
    assert f"127.0.0.1:{stack.hooks.port}" not in log


def test_the_reminder_is_written_with_the_request_and_due_before_the_timeout(stack: Stack) -> None:
    req = stack.ask("alice", "web-prod-01", login="deploy")
    rows = {(r.kind, r.channel): r for r in stack.outbox(req.id)}
    reminder = rows[("reminder", "chat")]
    # pending_timeout 1h (policy), reminder_before 5m (server.yaml): due 55 min after the request
    assert timedelta(microseconds=reminder.next_us - reminder.created_us) == timedelta(minutes=55)
    assert reminder.state == "pending" and reminder.level == -1  # names the level that waits when sent
