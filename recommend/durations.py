"""Durations as people write them (`90s`, `30m`, `1h30m`) and as the explanation shows them.

Written back as `1h30m` text by `policy.format_duration`.
"""
from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([hms])")
_WHOLE = re.compile(r"(?:\d+[hms])+")
_UNIT = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raises ValueError with a plain message."""
    value = text.strip()
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"`{text}` is not a duration (write it like 90s, 30m, 1h or 1h30m)")
    seconds = sum(int(n) * _UNIT[u] for n, u in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"`{text}` must be longer than zero")
    return timedelta(seconds=seconds)


def format_minutes(minutes: float) -> str:
    """`40 min`, `2 h`, `1 h 30 min`: how the explanation shows a length."""
    total = round(minutes)
    if total < 90:
        return f"{total} min"
    hours, rest = divmod(total, 60)
    return f"{hours} h" if rest == 0 else f"{hours} h {rest} min"
