"""Which text may be a name in a policy (users, groups, resources, labels, rules, tests...).

Names are shown to approvers and matched by people reading a policy in review:
a control character, a bidi override (`Trojan Source`) or letters from two
scripts (Latin `a` next to Cyrillic `\u0430`) make two different names look the same,
or make a name look like something it is not. Such names are refused at check.
Python has no Unicode script property; a letter's script is the first word of
its Unicode name (LATIN, CYRILLIC, GREEK, CJK, HIRAGANA, FULLWIDTH...), which
separates exactly the look-alikes that matter here.
"""
from __future__ import annotations

import unicodedata

from policy import limits

# Explicit bidi formatting characters (embeddings, overrides, isolates) and marks.
_BIDI_CLASSES = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})
_BIDI_MARKS = frozenset({"\u200e", "\u200f", "\u061c"})  # LRM, RLM, ALM
# Unicode categories that are invisible or control: controls, format, surrogates,
# private use, unassigned, line and paragraph separators.
_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Scripts that are written together: Japanese and Korean text mixes Han with kana/hangul.
_COMPATIBLE_SCRIPTS = (frozenset({"CJK", "HIRAGANA", "KATAKANA"}), frozenset({"CJK", "HANGUL"}),
                       frozenset({"CJK", "BOPOMOFO"}))


def _visible(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def bidi_or_control(text: str, *, allow_newlines: bool = False) -> str | None:
    """Why `text` holds a bidi or control character (None when it holds none)."""
    for ch in text:
        if allow_newlines and ch in "\n\t\r":
            continue
        if ch in _BIDI_MARKS or unicodedata.bidirectional(ch) in _BIDI_CLASSES:
            return f"a bidi control character ({_visible(ch)})"
        if unicodedata.category(ch) in _CONTROL_CATEGORIES:
            return f"a control or invisible character ({_visible(ch)})"
        if unicodedata.category(ch) == "Zs" and ch != " ":
            return f"an unusual space ({_visible(ch)})"
    return None


def _script(ch: str) -> str | None:
    """The script of a letter (first word of its Unicode name); None for anything else."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def mixed_scripts(text: str) -> tuple[str, str] | None:
    """Two scripts whose letters are mixed in `text` (None when it uses one script)."""
    seen: list[str] = []
    for ch in text:
        script = _script(ch)
        if script is not None and script not in seen:
            seen.append(script)
    if len(seen) < 2 or any(set(seen) <= group for group in _COMPATIBLE_SCRIPTS):
        return None
    return seen[0], seen[1]


def name_problem(text: str) -> str | None:
    """Why `text` cannot be a name (None when it can): too long, control, bidi, mixed scripts."""
    if len(text) > limits.MAX_NAME_CHARS:
        return f"is {len(text)} characters long, above the limit of {limits.MAX_NAME_CHARS}"
    bad = bidi_or_control(text)
    if bad:
        return f"contains {bad}"
    mixed = mixed_scripts(text)
    if mixed:
        return f"mixes letters of two scripts ({mixed[0].lower()} and {mixed[1].lower()})"
    return None


def shown(text: str, limit: int = 60) -> str:
    """`text` safe to print in an error: control, bidi and unusual characters as `\\uXXXX`."""
    out = []
    for ch in text[:limit]:
        out.append(ch if ch == " " or (ch.isprintable() and bidi_or_control(ch) is None)
                   else f"\\u{ord(ch):04x}")
    return "".join(out) + ("..." if len(text) > limit else "")
