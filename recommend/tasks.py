"""Task type from a request's reason and ticket: the strongest single predictor
of how long access is needed (a report takes minutes, a migration hours)."""
from __future__ import annotations

import re

TASKS: tuple[str, ...] = ("migration", "deploy", "config change", "incident", "debugging", "report", "other")

# Checked in this order: the first match wins ("incident: debug ..." is an incident).
_KEYWORDS: tuple[tuple[str, str], ...] = (
    (
        "incident",
        r"incident|outage|pager|paged|alert|sev ?[0-3]|p[01]\b|on-?call|emergency|firefight|is down|went down",
    ),
    ("migration", r"migrat\w*|schema|alembic|flyway|liquibase|backfill|alter table|add (?:an )?index|reindex"),
    ("deploy", r"deploy\w*|release|rollout|roll out|roll ?back|hotfix|ship\w*|upgrade"),
    ("config change", r"config\w*|setting|parameter|tune|tuning|pg_hba|feature flag|flag|rotate|renew|cron"),
    (
        "debugging",
        r"debug\w*|investigat\w*|troubleshoot\w*|look into|diagnos\w*|slow quer\w*|bug|error\w*|failing"
        r"|crash\w*|logs?\b",
    ),
    ("report", r"report\w*|export|analytics|audit|dashboard|metrics|numbers|data pull|finance|compliance|count of"),
)
# Matched against the lowercased text: faster than re.IGNORECASE.
_COMPILED = tuple((task, re.compile(rf"\b(?:{pattern})")) for task, pattern in _KEYWORDS)

# Ticket prefixes (`INC-123`), used only when the reason says nothing.
_TICKET_PREFIX = {"INC": "incident", "SEV": "incident", "MIG": "migration", "REL": "deploy",
                  "DEP": "deploy", "CHG": "config change", "BUG": "debugging", "RPT": "report"}
_TICKET = re.compile(r"\b([A-Za-z]+)-\d+")


def classify_task(reason: str, ticket: str = "") -> str:
    """One of TASKS, from keywords in the reason, then the ticket's prefix."""
    text = reason.lower()
    for task, pattern in _COMPILED:
        if pattern.search(text):
            return task
    for text in (ticket, reason):
        match = _TICKET.search(text)
        if match and match.group(1).upper() in _TICKET_PREFIX:
            return _TICKET_PREFIX[match.group(1).upper()]
    return "other"
