"""The relay's header-only framing (`broker.pg.framing.Walker`), with byte strings."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.pg import protocol as p
from broker.pg.framing import Walker
from tests.broker.pg.wire import msg


def _walk(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []
    w = Walker(frozenset({ord("Q")}), frozenset({ord("S")}), lambda t, b: seen.append((t, bytes(b))),
               count_type=ord("D"))
    for c in chunks:
        w.feed(c)
    seen.append((-1, bytes([w.count])))
    return seen


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
@settings(max_examples=200, deadline=None)
def test_walker_same_result_for_any_split(cuts: list[int]) -> None:
    stream = (msg(b"Q", b"select 1\x00") + msg(b"D", b"x" * 50) + msg(b"S") + msg(b"T", b"y" * 30)
              + msg(b"D", b"") + msg(b"Q", b"q" * 70 + b"\x00"))
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks, prev = [], 0
    for c in [*points, len(stream)]:
        chunks.append(stream[prev:c])
        prev = c
    assert _walk(chunks) == _walk([stream]) == [
        (ord("Q"), b"select 1\x00"), (ord("S"), b""), (ord("Q"), b"q" * 70 + b"\x00"), (-1, bytes([2]))]


def test_walker_refuses_bad_lengths() -> None:
    w = Walker(frozenset(), frozenset(), lambda t, b: None, max_length=1000)
    with pytest.raises(p.ProtocolError) as info:
        w.feed(b"Q" + struct.pack("!I", 5000))
    assert info.value.sqlstate == "54000"
    w2 = Walker(frozenset(), frozenset(), lambda t, b: None)
    with pytest.raises(p.ProtocolError):
        w2.feed(b"Q\x00\x00")
        w2.feed(b"\x00\x02")
