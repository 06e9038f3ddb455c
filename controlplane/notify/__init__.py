"""Notifications: approvers and requesters told where they are, through a transactional outbox.

    config.py     `notify:` of server.yaml (channels, routing, bounds; secrets from env/files)
    planner.py    the ledger's tx hook: a change's audit events -> outbox rows, same transaction
    worker.py     the sending thread: claim due rows, send, retry with backoff, settle
    process.py    that worker in a child process at a lower CPU priority (the default)
    channels.py   email (SMTP + STARTTLS + AUTH), Slack-compatible webhook, signed generic webhook
    messages.py   what a message says, per channel (bounded, user text shown literally)
    directory.py  the one lookup of a person's email address
The outbox table itself: `controlplane/store/outbox.py`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from controlplane.core import AccessCore
from controlplane.notify.config import NotifyConfig, NotifyConfigError, parse_notify
from controlplane.notify.directory import directory_lookup
from controlplane.notify.process import SenderProcess, SenderSpec
from controlplane.notify.worker import Notifier


class Running(Protocol):
    def stop(self) -> None: ...


def start_notifications(core: AccessCore, notify: dict[str, Any], *, data_dir: Path, policies: Path,
                        recommender: bool, recommend_coverage: float, store_url: str = "",
                        people: bool = False) -> Running:
    """Install the planner on the server's ledger and start the sender (`notify.sender`).
    `people`: sign-in is on (the sender then counts signed-in people among the users)."""
    config = parse_notify(notify)
    if config.sender == "thread":
        notifier = Notifier(core, config, email_of=directory_lookup(core.ledger.store))
        notifier.install()
        notifier.start()
        return notifier
    sender = SenderProcess(core, config, SenderSpec(
        data_dir=str(data_dir), policies=str(policies), notify=notify,
        recommender=recommender and config.recommendation, recommend_coverage=recommend_coverage,
        people=people), store_url)
    sender.start()  # installs the planner and starts the dispatcher (rows left from before a restart go first)
    return sender


__all__ = ["Notifier", "NotifyConfig", "NotifyConfigError", "Running", "parse_notify", "start_notifications"]
