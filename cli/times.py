"""Times on the command line: RFC 3339 with a zone (`--until`, `--start`)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import click


def parse_time(text: str) -> dt.datetime:
    """RFC 3339 (`2026-12-05T22:00Z`, `2026-12-05T22:00:00+01:00`) -> aware UTC datetime
    (click.BadParameter on bad text, or a time without a zone)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise click.BadParameter(f"`{text}` is not an RFC 3339 time (e.g. 2026-12-05T22:00Z)") from None
    if value.tzinfo is None:
        raise click.BadParameter(f"`{text}` has no time zone: add `Z` for UTC")
    return value.astimezone(dt.UTC)


def timestamp(value: dt.datetime) -> Any:
    """A protobuf Timestamp of an aware datetime."""
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts
