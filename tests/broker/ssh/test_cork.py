"""broker.ssh.cork: an SSH connection's packets inside the block leave in one write."""
from __future__ import annotations

import inspect

import asyncssh
import pytest

from broker.ssh.cork import corked


class FakeConnection:
    """What `corked` relies on in asyncssh 2.x: every packet goes through `_send(data)`."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def _send(self, data: bytes) -> None:
        self.writes.append(data)

    def send_packet(self, data: bytes) -> None:
        self._send(b"ignore")  # asyncssh writes an SSH_MSG_IGNORE before each packet
        self._send(data)


def test_packets_in_the_block_leave_in_one_write() -> None:
    conn = FakeConnection()
    with corked(conn):
        conn.send_packet(b"line")
        conn.send_packet(b"close")
        assert conn.writes == []
    conn.send_packet(b"after")
    assert conn.writes == [b"ignorelineignoreclose", b"ignore", b"after"]


def test_a_nested_block_shares_the_outer_write() -> None:
    conn = FakeConnection()
    with corked(conn):
        conn.send_packet(b"a")
        with corked(conn):
            conn.send_packet(b"b")
        conn.send_packet(b"c")
    assert conn.writes == [b"ignoreaignorebignorec"]


def test_what_was_collected_leaves_even_when_the_block_fails() -> None:
    conn = FakeConnection()
    with pytest.raises(RuntimeError), corked(conn):
        conn.send_packet(b"line")
        raise RuntimeError("boom")
    assert conn.writes == [b"ignoreline"]


def test_without_a_connection_or_its_send_nothing_is_held() -> None:
    with corked(None):
        pass
    other = object()
    with corked(other):
        pass


def test_asyncssh_sends_every_packet_through_send() -> None:
    # The private method `corked` stands in for (asyncssh 2.x): a packet is built, then `_send`.
    source = inspect.getsource(asyncssh.connection.SSHConnection.send_packet)
    assert "self._send(packet + mac)" in source
    assert "self._transport.write(data)" in inspect.getsource(asyncssh.connection.SSHConnection._send)
