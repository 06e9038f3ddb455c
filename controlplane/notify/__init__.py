"""Notifications: approvers and requesters told where they are, through a transactional outbox.

    config.py     `notify:` of server.yaml (channels, routing, bounds; secrets from env/files)
    planner.py    the ledger's tx hook: a change's audit events -> outbox rows, same transaction
    worker.py     the sending thread: claim due rows, send, retry with backoff, settle
    channels.py   email (SMTP + STARTTLS + AUTH), Slack-compatible webhook, signed generic webhook
    messages.py   what a message says, per channel (bounded, user text shown literally)
    directory.py  the one lookup of a person's email address
The outbox table itself: `controlplane/store/outbox.py`.
"""
from __future__ import annotations

from controlplane.notify.config import NotifyConfig, NotifyConfigError, parse_notify
from controlplane.notify.worker import Notifier

__all__ = ["Notifier", "NotifyConfig", "NotifyConfigError", "parse_notify"]
