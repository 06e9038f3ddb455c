"""What a notification says: one `Message` per outbox row, rendered per channel (no I/O).

Every text a user wrote (reason, ticket, comment, names) goes through `jitgate.text.visible`
(controls and bidi characters shown as escapes) and is clipped; in Slack's mrkdwn it is also
escaped (`&`, `<`, `>`), so a reason cannot mention `@channel` or fake a link. A rendered
body never exceeds MAX_BODY bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controlplane.ledger import fmt_td, iso
from controlplane.model import ExtensionRecord, Recommendation, RequestRecord
from jitgate.text import visible
from policy.approvals import approvers_text

MAX_FIELD = 1000   # characters of one user text in a message (the API allows 2 KiB; a glance is enough)
MAX_SUBJECT = 150  # Slack's header limit; a mail subject line stays short too
MAX_BODY = 32 * 1024  # bytes of any rendered body (email text, Slack JSON, webhook JSON)
MAX_RECIPIENTS = 50  # people named in one message (the rest are counted)


def clip(text: Any, limit: int = MAX_FIELD) -> str:
    """User text shown literally and at most `limit` characters."""
    shown = visible(text)
    return shown if len(shown) <= limit else shown[:limit - 1] + "…"


def slack_escape(text: str) -> str:
    """Slack mrkdwn's three control characters (its docs: escape &, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Message:
    """One notification, channel-neutral."""

    kind: str
    key: str                    # the idempotency key
    request_id: str
    subject: str                # one line
    lines: list[str]            # the body's opening sentences
    facts: list[tuple[str, str]]  # label -> value (already clipped)
    recipients: list[str]       # people it is for (names)
    command: str = ""           # what to type, e.g. `jitgate approve ID`
    link: str = ""
    payload: dict[str, Any] = field(default_factory=dict)  # the generic webhook's `request` object

    def text(self) -> str:
        """The plain-text body (email)."""
        out = [*self.lines, ""]
        out += [f"{label}: {value}" for label, value in self.facts]
        if self.command:
            out += ["", f"To decide: {self.command}"]
        if self.link:
            out += [f"Or open: {self.link}"]
        out += ["", f"-- jitgate ({self.key})"]
        return _fit("\n".join(out))

    def slack(self) -> dict[str, Any]:
        """Slack Block Kit (incoming webhook body)."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": self.subject[:MAX_SUBJECT]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape("\n".join(self.lines))[:2900]}},
        ]
        short = [f for f in self.facts if len(f[1]) <= 80][:10]
        long_ = [f for f in self.facts if len(f[1]) > 80]
        if short:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*{slack_escape(k)}*\n{slack_escape(v)}"} for k, v in short]})
        for k, v in long_:
            blocks.append({"type": "section",
                           "text": {"type": "mrkdwn", "text": f"*{slack_escape(k)}*\n{slack_escape(v)}"[:2900]}})
        if self.command:
            blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                        "text": f"To decide:\n```{slack_escape(self.command)}```"}})
        if self.link:
            blocks.append({"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Open request"}, "url": self.link}]})
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"jitgate · {slack_escape(self.request_id)} · {self.key}"}]})
        body = {"text": self.subject[:MAX_SUBJECT], "blocks": blocks}
        if len(json.dumps(body)) > MAX_BODY:  # cannot happen with clipped fields; kept honest anyway
            body = {"text": self.subject[:MAX_SUBJECT], "blocks": blocks[:2] + blocks[-1:]}
        return body

    def webhook(self, event_at: datetime) -> dict[str, Any]:
        """The generic webhook's JSON body."""
        body = {"id": self.key, "kind": self.kind, "at": iso(event_at), "request": self.payload,
                "recipients": self.recipients, "subject": self.subject, "text": self.text(),
                "command": self.command, "link": self.link}
        if len(json.dumps(body, ensure_ascii=False).encode()) > MAX_BODY:
            body["text"] = ""  # the fields carry the same facts; the whole stays within MAX_BODY
        return body


def _fit(text: str) -> str:
    data = text.encode()
    return text if len(data) <= MAX_BODY else data[:MAX_BODY - 3].decode(errors="ignore") + "..."


def _target(rec: RequestRecord) -> str:
    what = f"login {rec.login}" if rec.login else f"role {rec.role}" if rec.role else ""
    return f"{clip(rec.resource, 200)}" + (f" ({clip(what, 200)})" if what else "")


def _history(rec: RequestRecord) -> str:
    h = rec.history or {}
    parts = [f"{int(h.get('granted_90d', 0))} granted", f"{int(h.get('denied_90d', 0))} denied",
             f"{int(h.get('revoked_90d', 0))} revoked", f"{int(h.get('flagged_90d', 0))} flagged"]
    median = float(h.get("median_minutes", 0) or 0)
    if median:
        parts.append(f"median {median:.0f} min used on this resource")
    return ", ".join(parts)


def _who(names: list[str]) -> str:
    shown = ", ".join(clip(n, 100) for n in names[:MAX_RECIPIENTS])
    more = len(names) - MAX_RECIPIENTS
    return shown + (f" and {more} more" if more > 0 else "")


def render(kind: str, key: str, rec: RequestRecord, ext: ExtensionRecord | None, level: int,
           recipients: list[str], data: dict[str, Any], *, recommendation: Recommendation | None = None,
           web_url: str = "") -> Message:
    """The message of one outbox row about `rec` (and `ext`, when it is about an extension)."""
    target_id = ext.id if ext is not None else rec.id
    user = clip(rec.user, 100)
    decision = ext.decision if ext is not None else rec.decision
    duration = ext.duration if ext is not None else rec.duration
    ask = f"{user} asks for {_target(rec)} for {fmt_td(duration)}"
    if ext is not None:
        ask = f"{user} asks to extend grant {rec.id} on {_target(rec)} by {fmt_td(duration)}"
    facts: list[tuple[str, str]] = [("Request", target_id), ("Requester", user), ("Resource", _target(rec)),
                                    ("Duration", fmt_td(duration))]
    if ext is not None:
        facts.append(("Justification", clip(ext.justification)))
    facts.append(("Reason", clip(rec.reason)))
    if rec.ticket:
        facts.append(("Ticket", clip(rec.ticket, 256)))
    command, lines = "", []
    if kind in ("waiting", "level", "reminder"):
        levels = decision.approval.levels if decision.approval else ()
        lv = levels[level] if 0 <= level < len(levels) else None
        where = f"level {level + 1} of {len(levels)}" if lv else "approval"
        subject = {"waiting": "Approval needed", "level": "Approval needed",
                   "reminder": "Reminder: approval still needed"}[kind] + f": {ask}"
        lines.append(f"{ask}. It waits for {where}" + (f" ({lv.min} from {approvers_text(lv.approvers)})." if lv
                                                       else "."))
        if kind == "level" and data.get("by"):
            lines.append(f"The previous level was approved by {clip(data['by'], 100)}.")
        if kind == "reminder" and rec.pending_deadline is not None:
            lines.append(f"It times out at {iso(rec.pending_deadline)} unless someone decides.")
        facts.append(("Rules", ", ".join(decision.rules) or "-"))
        if recommendation is not None:
            facts.append(("Recommended duration", f"{fmt_td(recommendation.duration)}"
                          + (" (fallback)" if recommendation.fallback else "")))
            facts.append(("Why", clip(recommendation.explanation)))
        else:
            facts.append(("Recommended duration", "none (no duration model answer)"))
        if decision.risk is not None:
            risk = decision.risk
            score = f"{float(risk.get('score', 0)):.2f}" if risk.get("known") else "unknown"
            reasons = "; ".join(clip(r, 200) for r in list(risk.get("reasons", []))[:5])
            facts.append(("Risk", score + (f" ({reasons})" if reasons else "")))
        facts.append(("Requester's last 90 days", _history(rec)))
        if recipients:
            facts.append(("Approvers told", _who(recipients)))
        command = f"jitgate approve {target_id}    (or: jitgate deny {target_id} --comment WHY)"
    elif kind == "break_glass":
        subject = f"Break-glass used: {user} on {_target(rec)}"
        lines.append(f"{user} used break-glass access to {_target(rec)} until {iso(rec.expires_at)}; "
                     "a review is owed.")
        facts.append(("Requester's last 90 days", _history(rec)))
        command = f"jitgate review {rec.id} --comment WHAT    (add --flag if it looks wrong)"
    else:
        what = {"approved": "was approved", "denied": "was denied", "revoked": "was revoked",
                "timed_out": "timed out: nobody decided in time",
                "expiry_warning": "expires soon"}[kind]
        noun = f"Your extension {target_id}" if ext is not None else f"Your request {rec.id}"
        subject = f"{noun} {what}"[:MAX_SUBJECT]
        lines.append(f"{noun} for {_target(rec)} {what}.")
        if data.get("by"):
            lines.append(f"By: {clip(data['by'], 100)}.")
        for label in ("comment", "reason"):
            if data.get(label):
                facts.append((label.capitalize(), clip(data[label])))
        if kind in ("approved", "expiry_warning") and rec.expires_at is not None:
            facts.append(("Expires", iso(rec.expires_at) or ""))
            if kind == "expiry_warning":
                command = f"jitgate extend {rec.id} --duration 30m --justification WHY"
    link = web_url.replace("{id}", target_id) if web_url else ""
    payload = {"id": rec.id, "extension": ext.id if ext else None, "user": rec.user, "resource": rec.resource,
               "kind": rec.kind, "login": rec.login, "role": rec.role, "duration": fmt_td(duration),
               "reason": rec.reason[:MAX_FIELD], "ticket": rec.ticket[:256], "emergency": rec.emergency,
               "state": rec.state, "level": level + 1 if level >= 0 else None, "rules": list(decision.rules),
               "risk": decision.risk, "history": dict(rec.history or {}),
               "recommendation": None if recommendation is None else {
                   "duration": fmt_td(recommendation.duration), "explanation": recommendation.explanation[:MAX_FIELD],
                   "fallback": recommendation.fallback},
               "created_at": iso(rec.created_at), "expires_at": iso(rec.expires_at),
               "pending_deadline": iso(rec.pending_deadline)}
    return Message(kind=kind, key=key, request_id=rec.id, subject=clip(subject, MAX_SUBJECT), lines=lines,
                   facts=facts, recipients=recipients[:MAX_RECIPIENTS], command=command, link=link, payload=payload)


def now_utc() -> datetime:
    return datetime.now(UTC)


__all__ = ["MAX_BODY", "MAX_FIELD", "Message", "clip", "render", "slack_escape"]
