"""Text from users shown literally: one rule for every part that shows it to a person.

Anyone can put text in front of an approver, an admin or a session's user: a
request's reason, a revocation's reason, a name, a PostgreSQL user name sent
before any login. Terminal control and invisible formatting would make a screen
lie: C0 and C1 controls, ESC (`\\e[8m` hides text, `\\e[2K\\r` erases a line),
DEL, and the invisible or bidi format characters (U+202E turns text around,
U+2066-2069 isolate it, U+200B-200F and U+FEFF hide inside a word). `visible()`
shows each as an escape (`\\x1b`, `\\u202e`), so the reader sees that it is there
and nothing is hidden or reordered. The CLI (`cli/output.py`), the brokers'
lines to a session's user and policy error messages use it.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

# Unicode categories never shown as themselves: controls (Cc: C0, DEL, C1), format
# characters (Cf: bidi embeddings/overrides/isolates, zero-width space/joiners, marks,
# BOM, soft hyphen, tag characters), line/paragraph separators, lone surrogates.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Letters and marks that render as nothing (Hangul fillers, the combining grapheme
# joiner): their categories are ordinary, their use in a name or reason is not.
_INVISIBLE_GLYPHS = frozenset("\u034f\u115f\u1160\u3164\uffa0")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Anything outside printable ASCII is a candidate; most of it (accents, CJK) is kept.
CANDIDATE = re.compile(r"[^\x20-\x7e]")


def is_hidden(ch: str) -> bool:
    """True for a character a terminal would act on or not draw (see the module doc)."""
    return ch in _INVISIBLE_GLYPHS or unicodedata.category(ch) in _HIDDEN_CATEGORIES


def escape(ch: str) -> str:
    """One character as a visible escape: `\\t`, `\\x1b`, `\\u202e`, `\\U000e0041`."""
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
    if not CANDIDATE.search(text):
        return text  # the common case: printable ASCII only

    def one(match: re.Match[str]) -> str:
        ch = match.group()
        if keep_newlines and ch == "\n":
            return ch
        return escape(ch) if is_hidden(ch) else ch

    return CANDIDATE.sub(one, text)


__all__ = ["CANDIDATE", "escape", "is_hidden", "visible"]
