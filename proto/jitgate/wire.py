"""gRPC transport settings shared by the control plane and every client (brokers, CLI).

Not generated: one place for what both ends of a channel must agree on, so the
server's limits and the clients' never drift apart again (issue 13: an 8 MiB
server limit against the clients' 4 MiB default let one stored row blind every
broker; 10 s keepalive pings against the server's default ping policy drew
`GOAWAY ENHANCE_YOUR_CALM too_many_pings`). Clients may not import
`controlplane`, so this lives beside the generated code.

| setting | value | why |
| --- | --- | --- |
| max message, both directions, both ends | 1 MiB | largest legitimate message is a page of bounded rows (`controlplane/bounds.py`) or a policy file; small enough that one call cannot hold much memory |
| client keepalive ping | every 10 s, 5 s to answer | a dead control plane is noticed within ~15 s even on an idle channel |
| server: least interval between pings without data | 5 s | half the clients' interval, so timer jitter never counts as a strike |
| server: ping strikes before GOAWAY | 2 (gRPC's default) | only a client pinging faster than agreed is cut off |
"""
from __future__ import annotations

# Both ends send and accept at most this many bytes per message.
MAX_MESSAGE_BYTES = 1024 * 1024

# Client keepalive: ping an idle channel this often and drop it when a ping goes unanswered.
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
# The server accepts pings without data this often (half the clients' interval: jitter is not abuse).
SERVER_MIN_PING_INTERVAL_MS = KEEPALIVE_TIME_MS // 2
# Pings faster than the above that the server forgives before GOAWAY (gRPC's own default).
SERVER_MAX_PING_STRIKES = 2

Options = list[tuple[str, int]]


def _message_options() -> Options:
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def server_options() -> Options:
    """Channel arguments of the control plane's gRPC server."""
    return [*_message_options(), ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.min_ping_interval_without_data_ms", SERVER_MIN_PING_INTERVAL_MS), ("grpc.http2.max_ping_strikes", SERVER_MAX_PING_STRIKES)]


def client_options(keepalive: bool = True) -> Options:
    """Channel arguments of a client (brokers and long-running commands keep the channel alive)."""
    options = _message_options()
    if keepalive:
        options += [
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            # 0: keep pinging an idle channel (the default, 2, stops after two pings without data).
            ("grpc.http2.max_pings_without_data", 0),
        ]
    return options


__all__ = [
    "KEEPALIVE_TIMEOUT_MS", "KEEPALIVE_TIME_MS", "MAX_MESSAGE_BYTES", "SERVER_MAX_PING_STRIKES",
    "SERVER_MIN_PING_INTERVAL_MS", "client_options", "server_options",
]
