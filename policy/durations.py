"""Durations as policy authors write them: `90s`, `30m`, `1h`, `1h30m`, `2d`."""
from __future__ import annotations

import re
from datetime import timedelta

from policy.limits import MAX_DURATION

_PART = re.compile(r"(\d+)(d|h|m|s)")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_ORDER = "dhms"
# `366d23h59m59s` is 13 characters; anything much longer is not a duration we accept.
_MAX_TEXT = 32


def parse_duration(s: str) -> timedelta:
    """Parse `1h30m`-style text (units d, h, m, s, each once, in that order).

    Raises ValueError with a plain message on anything else.
    """
    if not isinstance(s, str):
        raise ValueError(f"a duration must be text like `30m` or `1h30m`, got {type(s).__name__}")
    text = s.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"`{text[:_MAX_TEXT]}...` is not a duration (write e.g. `90s`, `30m`, `1h`, `1h30m`)")
    pos, seconds, last = 0, 0, -1
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        unit_rank = _ORDER.index(m.group(2))
        if unit_rank <= last:
            raise ValueError(f"`{s}` is not a duration: units must go d, h, m, s, each once")
        last = unit_rank
        seconds += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"`{s}` is not a duration (write e.g. `90s`, `30m`, `1h`, `1h30m`)")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"`{s}` is longer than the maximum of {format_duration(MAX_DURATION)}")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    """The shortest `1h30m`-style text of a whole number of seconds (`0s` for zero)."""
    total = int(td.total_seconds())
    if total < 0:
        raise ValueError("a duration cannot be negative")
    if total == 0:
        return "0s"
    out = []
    for unit in "hms":  # days are written as hours: `48h` reads better in a decision than `2d`
        n, total = divmod(total, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)
