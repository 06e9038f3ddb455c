"""Everything `jitgate` prints about stored data goes through here, so text from users
is shown literally.

Anyone can put text in front of an approver or an admin: a request's reason and
ticket, a comment, a justification, a user or resource name, a PostgreSQL user
name sent before any login, a client's address string, a recording's contents.
Two kinds of text could make a screen lie:

- rich markup and emoji codes (`[white on white]`, `[/]`, `:warning:`): rich
  parses a `str` as markup. Every table cell and styled line here is a
  `rich.text.Text`, which rich never parses, printed by a console with markup,
  emoji and highlighting off (so even a stray `str` stays literal).
- terminal control and invisible formatting: C0 and C1 controls, ESC (`\\e[8m`
  hides text, `\\e[2K\\r` erases a line), DEL, and the invisible or bidi format
  characters (U+202E turns text around, U+2066-2069 isolate it, U+200B-200F and
  U+FEFF hide inside a word). `visible()` shows each as an escape (`\\x1b`,
  `\\u202e`), so the reader sees that it is there and nothing is hidden or
  reordered. Plain lines (`echo`) need only this: click does not parse markup.

JSON output stays exact JSON: `json_text` escapes the same characters as `\\uXXXX`
(valid JSON for the same string). A backslash is shown as itself: text that
merely looks like an escape hides nothing. Every command's `--output json` writes
data the same way (`to_dict`, `rfc3339`): every field, false and zero included;
times RFC 3339 in UTC with microseconds (`2026-12-03T07:14:24.000000Z`, the form the
audit chain hashes); durations as POLICY.md writes them (`1h30m`); counts as numbers.

A table that does not fit the terminal (or, written to a pipe, `NOT_A_TERMINAL_WIDTH`
columns) without breaking a word or a header is printed as plain columns instead:
one line a row, cells padded, nothing cut or squeezed.

Terminal replays (`jitgate replay` of a shell, `sessions watch`) are the one
place raw terminal bytes are written on purpose: they are what the session showed.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from jitgate.text import CANDIDATE as _CANDIDATE
from jitgate.text import is_hidden, visible

# Columns of a table written to a pipe or file: wide enough that ids are never cut.
NOT_A_TERMINAL_WIDTH = 200


@dataclass(frozen=True)
class Styled:
    """A cell or part of a line with a rich style of our own (the text is still shown literally)."""

    text: Any
    style: str = ""


@dataclass(frozen=True)
class Col:
    """A table column and how it lays out (rich's column options, without importing rich)."""

    name: str
    no_wrap: bool = False
    overflow: str = "ellipsis"
    justify: str = "left"
    style: str = ""


def literal(value: Any) -> Any:
    """A rich `Text` showing `value` literally: never parsed as markup, hidden characters escaped."""
    from rich.text import Text

    if isinstance(value, Styled):
        return Text(visible(value.text), style=value.style)
    return Text(visible(value))


def console(err: bool = False) -> Any:
    """A rich console that interprets nothing in text (no markup, emoji or highlighting);
    when not writing to a terminal, wide enough that ids are never cut."""
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    width = None if stream.isatty() else NOT_A_TERMINAL_WIDTH
    return Console(file=stream, width=width, markup=False, emoji=False, highlight=False)


def print_table(title: Any, columns: Iterable[str | Col], rows: Iterable[Iterable[Any]], *,
                show_header: bool = True, box: bool = True) -> None:
    """A table whose title and every cell are shown literally (`literal`); as plain columns
    (`print_columns`) when it does not fit the console without breaking a word."""
    from rich import box as boxes
    from rich.table import Table

    cols = [c if isinstance(c, Col) else Col(c) for c in columns]
    cells = [[literal(v) for v in row] for row in rows]
    heads = [literal(c.name) for c in cols]
    out = console()
    borders = len(cols) + 1 if box else 0
    widths = column_widths(cols, [heads, *cells] if show_header else cells,
                           out.width - borders - CELL_PADDING * len(cols))
    if widths is None:
        print_columns(title, heads if show_header else None, cells, [c.justify for c in cols])
        return
    table = Table(title=literal(title) if title else None, show_header=show_header, show_lines=False,
                  box=boxes.HEAVY_HEAD if box else None)
    for col, head, width in zip(cols, heads, widths, strict=True):
        table.add_column(head, no_wrap=col.no_wrap, overflow=col.overflow,  # type: ignore[arg-type]
                         justify=col.justify, style=col.style, width=width)  # type: ignore[arg-type]
    for row in cells:
        table.add_row(*row)
    out.print(table)


# rich's default cell padding: one space left and right of every cell.
CELL_PADDING = 2


def _natural(cell: Any) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in cell.plain.splitlines()), default=1)


def _least(cell: Any, col: Col) -> int:
    """The narrowest a cell may be laid out: its longest word (all of it when it must not wrap)."""
    from rich.cells import cell_len

    if col.no_wrap:
        return _natural(cell)
    return max((cell_len(word) for word in cell.plain.split()), default=1)


def column_widths(cols: Sequence[Col], rows: Sequence[Sequence[Any]], room: int) -> list[int] | None:
    """Widths (without padding) that fit `room` without breaking a word or a no-wrap cell: each
    column its natural width when all fit, else at least its longest word, the rest of the room
    shared in proportion to what each still lacks. None when even the least widths do not fit."""
    natural = [max((_natural(r[i]) for r in rows), default=1) for i in range(len(cols))]
    if sum(natural) <= room:
        return natural
    least = [max((_least(r[i], c) for r in rows), default=1) for i, c in enumerate(cols)]
    if sum(least) > room:
        return None
    spare = room - sum(least)
    lacking = [n - m for n, m in zip(natural, least, strict=True)]
    total = sum(lacking)  # > spare here, since the natural widths did not fit
    widths = [m + spare * lack // total for m, lack in zip(least, lacking, strict=True)]
    for i in sorted(range(len(cols)), key=lambda i: lacking[i], reverse=True)[:room - sum(widths)]:
        widths[i] += 1  # what the rounding down left over
    return widths


def print_columns(title: Any, heads: Sequence[Any] | None, rows: Sequence[Sequence[Any]],
                  justify: Sequence[str]) -> None:
    """Rows as plain lines: cells (already `literal`) padded to their column, two spaces apart."""
    from rich.cells import cell_len

    lines = [heads, *rows] if heads is not None else list(rows)
    texts = [[cell.plain for cell in line] for line in lines]
    widths = [max((cell_len(t[i]) for t in texts), default=0) for i in range(len(justify))]
    if title:
        click.echo(literal(title).plain)
    for row in texts:
        padded = []
        for i, text in enumerate(row):
            gap = " " * (widths[i] - cell_len(text))
            padded.append(gap + text if justify[i] == "right" else text + gap)
        click.echo("  ".join(padded).rstrip())


def print_fields(title: Any, pairs: Iterable[tuple[str, Any]]) -> None:
    """`key  value` lines under a title, values shown literally."""
    print_table(title, [Col("field", style="bold", no_wrap=True), Col("value", overflow="fold")],
                ([key, value] for key, value in pairs), show_header=False, box=False)


def echo(text: Any = "", *, err: bool = False, keep_newlines: bool = False) -> None:
    """One plain line (click.echo) with hidden characters made visible."""
    click.echo(visible(text, keep_newlines=keep_newlines), err=err)


def echo_styled(*parts: Any, err: bool = False) -> None:
    """One line of parts (`str` or `Styled`), each shown literally, styled by rich where asked."""
    from rich.text import Text

    console(err).print(Text.assemble(*(literal(p) for p in parts)))


# JSON's own whitespace between tokens; inside strings json.dumps always escapes these.
_JSON_WHITESPACE = frozenset("\t\n\r")


def _json_escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _JSON_WHITESPACE or not is_hidden(ch):
        return ch
    data = ch.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{int.from_bytes(data[i:i + 2], 'big'):04x}" for i in range(0, len(data), 2))


def json_text(data: Any, *, ensure_ascii: bool = False, **dumps: Any) -> str:
    """`json.dumps(data)` with hidden characters as `\\uXXXX` escapes: the same JSON value,
    safe on a terminal. (json.dumps escapes only C0 and `"`/`\\` when `ensure_ascii` is off.)"""
    return safe_json(json.dumps(data, ensure_ascii=ensure_ascii, **dumps))


def safe_json(text: str) -> str:
    """JSON text (e.g. a line the server made) with hidden characters as `\\uXXXX` escapes.

    In valid JSON such characters can only stand inside strings (tab, CR and LF
    between tokens are left alone), where the escape means the same character, so
    the value is unchanged.
    """
    if not _CANDIDATE.search(text):
        return text
    return _CANDIDATE.sub(_json_escape, text)


def rfc3339(value: Any) -> str | None:
    """A time as RFC 3339 in UTC with microseconds (`2026-12-03T07:14:24.000000Z`, the form the
    audit chain hashes), for every `--output json`. Takes a protobuf Timestamp, a datetime
    (naive means UTC) or epoch seconds; None (and an unset Timestamp) stays None."""
    if value is None:
        return None
    if hasattr(value, "ToDatetime"):
        if value.seconds == 0 and value.nanos == 0:
            return None
        value = value.ToDatetime(tzinfo=dt.UTC)
    elif isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_text(value: Any) -> str:
    """A protobuf Duration or timedelta as POLICY.md writes durations (`1h30m`, `0s`); whole
    seconds, as every duration jitgate takes or gives is."""
    from policy.durations import format_duration

    seconds = int(value.total_seconds()) if isinstance(value, dt.timedelta) else int(value.seconds)
    return format_duration(dt.timedelta(seconds=max(seconds, 0)))


def to_dict(msg: Any) -> dict[str, Any]:
    """A protobuf message as JSON-ready data, the one way every `--output json` writes it:
    proto field names; every field, false, zero and empty included (an unset message is null);
    enums by name; 64-bit integers as numbers; times by `rfc3339`; durations by `duration_text`."""
    return {field.name: _field_value(msg, field) for field in msg.DESCRIPTOR.fields}


def _field_value(msg: Any, field: Any) -> Any:
    value = getattr(msg, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        item = field.message_type.fields_by_name["value"]
        return {str(k): _scalar(item, v) for k, v in value.items()}
    if field.is_repeated:
        return [_scalar(field, v) for v in value]
    if field.has_presence and not msg.HasField(field.name):
        return None
    return _scalar(field, value)


def _scalar(field: Any, value: Any) -> Any:
    from google.protobuf.descriptor import FieldDescriptor

    if field.message_type is not None:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return rfc3339(value)
        if name == "google.protobuf.Duration":
            return duration_text(value)
        return to_dict(value)
    if field.enum_type is not None:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        import base64

        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def _json_value(value: Any) -> Any:
    """What `print_json` writes for a value json cannot: messages, times and durations the one way."""
    if hasattr(value, "DESCRIPTOR"):
        name = value.DESCRIPTOR.full_name
        if name == "google.protobuf.Timestamp":
            return rfc3339(value)
        if name == "google.protobuf.Duration":
            return duration_text(value)
        return to_dict(value)
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, dt.timedelta):
        return duration_text(value)
    return str(value)


def print_json(data: Any) -> None:
    """`data` (a dict or a protobuf message) as indented, sorted JSON."""
    click.echo(json_text(_json_value(data) if hasattr(data, "DESCRIPTOR") else data, ensure_ascii=True, indent=2,
                         sort_keys=True, default=_json_value))


__all__ = ["Col", "Styled", "column_widths", "console", "duration_text", "echo", "echo_styled", "is_hidden",
           "json_text", "literal", "print_columns", "print_fields", "print_json", "print_table", "rfc3339",
           "safe_json", "to_dict", "visible"]
