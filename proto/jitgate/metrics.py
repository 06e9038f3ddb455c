"""What every jitgate process's Prometheus endpoint shares: the `--metrics HOST:PORT`
value and the HTTP listener serving one registry.

Each process builds its own `prometheus_client.CollectorRegistry` and passes it
to what it measures (`controlplane/metrics.py`, `broker/metrics.py`); nothing is
registered in prometheus_client's global default registry. Labels come only
from bounded sets (method names, states, status names, error codes, the broker
kind), never from user input, and no metric carries a secret.

The endpoint is plain HTTP without authentication, like every Prometheus
exporter: bind it to loopback (or a monitoring network), as `127.0.0.1:PORT`.
"""
from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):([0-9]{1,5})$")

# Latency buckets (seconds) for calls and decisions: 0.5 ms to 10 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Lag and lateness buckets (seconds): 1 ms to 60 s.
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def parse_metrics_address(value: str) -> tuple[str, int]:
    """`127.0.0.1:9464` (`[::1]:9464`) -> (host, port); ValueError with a plain sentence."""
    m = _HOSTPORT.match(value.strip())
    if not m:
        raise ValueError(f"metrics address `{value}` is not HOST:PORT (e.g. 127.0.0.1:9464)")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    if port > 65535:
        raise ValueError(f"port {port} of metrics address `{value}` is out of range")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"metrics address `{value}`: give an IP address (or localhost) to bind") from None
    return host, port


@dataclass
class MetricsEndpoint:
    """A running /metrics listener; `stop()` closes it."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(address: str, registry: CollectorRegistry) -> MetricsEndpoint:
    """Serve `registry` at http://ADDRESS/metrics (port 0 picks one: see `.address`)."""
    host, port = parse_metrics_address(address)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ValueError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    return MetricsEndpoint(server, thread)


__all__ = ["LAG_BUCKETS", "LATENCY_BUCKETS", "MetricsEndpoint", "parse_metrics_address", "serve_metrics"]
