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
merely looks like an escape hides nothing.

Terminal replays (`jitgate replay` of a shell, `sessions watch`) are the one
place raw terminal bytes are written on purpose: they are what the session showed.
"""
from __future__ import annotations

import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable

import click

# Unicode categories never shown as themselves: controls (Cc: C0, DEL, C1), format
# characters (Cf: bidi embeddings/overrides/isolates, zero-width space/joiners, marks,
# BOM, soft hyphen, tag characters), line/paragraph separators, lone surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Letters and marks that render as nothing (Hangul fillers, the combining grapheme
# joiner): their categories are ordinary, their use in a name or reason is not.
_INVISIBLE_GLYPHS = frozenset("\u034f\u115f\u1160\u3164\uffa0")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Columns of a table written to a pipe or file: wide enough that ids are never cut.
NOT_A_TERMINAL_WIDTH = 200
# Anything outside printable ASCII is a candidate; most of it (accents, CJK) is kept.
_CANDIDATE = re.compile(r"[^\x20-\x7e]")


def is_hidden(ch: str) -> bool:
    """True for a character a terminal would act on or not draw (see the module doc)."""
    return ch in _INVISIBLE_GLYPHS or unicodedata.category(ch) in _HIDDEN_CATEGORIES


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: Any, *, keep_newlines: bool = False) -> str:
    """`text` with every control, bidi and invisible character shown as an escape (`\\x1b`, `\\u202e`).

    `keep_newlines` keeps `\\n` as a line break (for multi-line text printed as lines).
    """
    text = "" if text is None else str(text)
    if not _CANDIDATE.search(text):
        return text  # the common case: printable ASCII only

    def one(match: re.Match[str]) -> str:
        ch = match.group()
        if keep_newlines and ch == "\n":
            return ch
        return _escape(ch) if is_hidden(ch) else ch

    return _CANDIDATE.sub(one, text)


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
    """A table whose title and every cell are shown literally (`literal`)."""
    from rich import box as boxes
    from rich.table import Table

    table = Table(title=literal(title) if title else None, show_header=show_header, show_lines=False,
                  box=boxes.HEAVY_HEAD if box else None)
    for col in columns:
        col = col if isinstance(col, Col) else Col(col)
        table.add_column(literal(col.name), no_wrap=col.no_wrap, overflow=col.overflow,  # type: ignore[arg-type]
                         justify=col.justify, style=col.style)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(literal(v) for v in row))
    console().print(table)


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


def to_dict(msg: Any) -> dict[str, Any]:
    """A protobuf message as JSON-ready data (proto field names)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def print_json(data: Any) -> None:
    """`data` (a dict or a protobuf message) as indented, sorted JSON."""
    if hasattr(data, "DESCRIPTOR"):
        data = to_dict(data)
    click.echo(json_text(data, ensure_ascii=True, indent=2, sort_keys=True, default=str))


__all__ = ["Col", "Styled", "console", "echo", "echo_styled", "is_hidden", "json_text", "literal",
           "print_fields", "print_json", "print_table", "safe_json", "to_dict", "visible"]
