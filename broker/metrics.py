"""A broker's Prometheus metrics (`jitgate ssh-broker|pg-broker --metrics 127.0.0.1:PORT`), on a
registry of the process's own (`jitgate.metrics`).

| metric | type | labels | what |
| --- | --- | --- | --- |
| `jitgate_broker_live_sessions` | gauge | kind | sessions with a live monitor now |
| `jitgate_broker_cut_lateness_seconds` | histogram | kind | deadline -> start of the cut (expiry cuts) |
| `jitgate_broker_rpc_seconds` | histogram | kind, method, code | calls to the control plane, failover included |
| `jitgate_broker_event_stream_lag_seconds` | histogram | kind | from an event's commit to its arrival here |
| `jitgate_broker_control_plane` | gauge | kind, address | 1 for the control plane calls go to now, 0 for the others |

`kind` is `ssh` or `pg`; `method` a BrokerService/AccessService method name;
`code` a gRPC status name; `address` one of the broker's own `--server` list.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from broker.monitor import EXPIRED, MonitorHub, SessionMonitor
from jitgate.metrics import LAG_BUCKETS, LATENCY_BUCKETS, MetricsEndpoint, serve_metrics

KINDS = frozenset({"ssh", "pg"})


class BrokerMetrics:
    """Every broker metric, on `registry`; `attach` hooks them to a broker's client and hub."""

    def __init__(self, registry: CollectorRegistry, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"broker kind `{kind}` is not one of {sorted(KINDS)}")
        self.registry = registry
        self.kind = kind
        self.live = Gauge("jitgate_broker_live_sessions", "Sessions with a live monitor", ["kind"],
                          registry=registry)
        self.cut_lateness = Histogram("jitgate_broker_cut_lateness_seconds",
                                      "From a session's deadline to the start of its cut (expiry cuts)", ["kind"],
                                      buckets=LAG_BUCKETS, registry=registry)
        self.rpc = Histogram("jitgate_broker_rpc_seconds", "Calls to the control plane, failover included",
                             ["kind", "method", "code"], buckets=LATENCY_BUCKETS, registry=registry)
        self.event_lag = Histogram("jitgate_broker_event_stream_lag_seconds",
                                   "From an event's commit to its arrival at the broker", ["kind"],
                                   buckets=LAG_BUCKETS, registry=registry)
        self.plane = Gauge("jitgate_broker_control_plane", "1 for the control plane calls go to now",
                           ["kind", "address"], registry=registry)
        self.cut_lateness.labels(kind)
        self.event_lag.labels(kind)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc.labels(self.kind, method, code).observe(seconds)

    def observe_lag(self, seconds: float) -> None:
        self.event_lag.labels(self.kind).observe(max(0.0, seconds))

    def observe_cut(self, mon: SessionMonitor) -> None:
        """A monitor ended with a cut: an expiry cut's lateness (the deadline the cut was for)."""
        cut = mon.cut
        if cut is not None and cut.reason == EXPIRED:
            late = (cut.at - mon.deadline) / dt.timedelta(seconds=1)
            self.cut_lateness.labels(self.kind).observe(max(0.0, late))

    def attach(self, cp: Any, hub: MonitorHub) -> None:
        """Measure `cp` (a `broker.cpclient.ControlPlaneClient`) and `hub`."""
        cp.planes.observer = self.observe_rpc
        cp.lag_observer = self.observe_lag
        hub.cut_observer = self.observe_cut
        self.live.labels(self.kind).set_function(lambda: float(len(hub)))
        for address in cp.servers.addresses:  # the broker's own list: a bounded set
            self.plane.labels(self.kind, address).set_function(_is_current(cp.servers, address))


def _is_current(servers: Any, address: str) -> Callable[[], float]:
    return lambda: 1.0 if servers.current == address else 0.0


def start_broker_metrics(address: str | None, kind: str, cp: Any, hub: MonitorHub) -> MetricsEndpoint | None:
    """With `--metrics ADDRESS`: the broker's metrics hooked to `cp` and `hub`, served; else None."""
    if not address:
        return None
    metrics = BrokerMetrics(CollectorRegistry(auto_describe=True), kind)
    metrics.attach(cp, hub)
    return serve_metrics(address, metrics.registry)


__all__ = ["BrokerMetrics", "start_broker_metrics"]
