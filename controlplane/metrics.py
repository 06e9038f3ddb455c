"""The control plane's Prometheus metrics (`jitgate server --metrics 127.0.0.1:PORT`, or
`metrics:` in server.yaml), on a registry of the process's own (`jitgate.metrics`).

| metric | type | labels | what |
| --- | --- | --- | --- |
| `jitgate_requests` | gauge | state | requests in the store by state, counted at each scrape (one shared store) |
| `jitgate_request_transitions_total` | counter | state | requests this plane moved into a state (audit events) |
| `jitgate_decision_seconds` | histogram | | one policy decision of a new request |
| `jitgate_rpc_seconds` | histogram | method, code | gRPC calls served, by method and status (a server interceptor) |
| `jitgate_event_stream_lag_seconds` | histogram | | from an event's commit to its sending on a watch stream |
| `jitgate_store_errors_total` | counter | code | calls failed on the store (`store.*` codes), failed scrapes |
| `jitgate_watchers` | gauge | | watch streams (WatchEvents, WatchEventBatches) open now |

Methods are labelled only when they are jitgate.v1's own (anything else a client
names is `other`); states, status names and `store.*` codes are fixed sets.
"""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controlplane.model import ACTIVE, CANCELLED, DENIED, EXPIRED, PENDING, REVOKED, TIMED_OUT, Change
from jitgate.errors import CODES
from jitgate.metrics import LAG_BUCKETS, LATENCY_BUCKETS, MetricsEndpoint, serve_metrics
from jitgate.status import reason_of

log = logging.getLogger(__name__)

STATES = (PENDING, ACTIVE, DENIED, CANCELLED, TIMED_OUT, EXPIRED, REVOKED)
_PREFIX = "/jitgate.v1."
_STORE_CODES = frozenset(c for c in CODES if c.startswith("store."))


def method_label(method: str) -> str:
    """`/jitgate.v1.AccessService/GetRequest` -> `AccessService/GetRequest`; any other name `other`
    (a client can send any method name: labels stay a bounded set)."""
    if method.startswith(_PREFIX) and method.count("/") == 2:
        service, name = method[len(_PREFIX):].split("/")
        if service.endswith("Service") and name.isidentifier() and len(method) <= 96:
            return f"{service}/{name}"
    return "other"


def store_code_label(code: str) -> str:
    return code if code in _STORE_CODES else "store.other"


class _Trailers:
    """What `jitgate.status.reason_of` reads, from a servicer context's trailing metadata."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def trailing_metadata(self) -> Any:
        return self._context.trailing_metadata()


class RequestStates(Collector):
    """`jitgate_requests{state}` from the store when scraped (runs on the HTTP thread)."""

    def __init__(self, count: Callable[[str], int], on_error: Callable[[], None]) -> None:
        self._count = count
        self._on_error = on_error

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily("jitgate_requests", "Requests in the store by state", labels=["state"])
        try:
            counts = [(state, self._count(state)) for state in STATES]
        except Exception:  # the store is away: no gauge this scrape, and the error is counted
            log.warning("metrics: cannot count requests in the store", exc_info=True)
            self._on_error()
            return []
        for state, n in counts:
            family.add_metric([state], n)
        return [family]


class ControlPlaneMetrics(grpc.aio.ServerInterceptor):
    """Every control-plane metric, on `registry`; also the interceptor timing each RPC."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.transitions = Counter("jitgate_request_transitions", "Requests this plane moved into a state",
                                   ["state"], registry=registry)
        self.decision = Histogram("jitgate_decision_seconds", "Policy decision of a new request",
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self.rpc = Histogram("jitgate_rpc_seconds", "gRPC calls served, by method and status",
                             ["method", "code"], buckets=LATENCY_BUCKETS, registry=registry)
        self.event_lag = Histogram("jitgate_event_stream_lag_seconds",
                                   "From an event's commit to its sending on a WatchEvents stream",
                                   buckets=LAG_BUCKETS, registry=registry)
        self.store_errors = Counter("jitgate_store_errors", "Calls that failed on the store", ["code"],
                                    registry=registry)
        self.watchers = Gauge("jitgate_watchers", "WatchEvents streams open now", registry=registry)
        for state in STATES:  # every series exists from the start (a rate needs its zero)
            self.transitions.labels(state)
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    # -- what the core tells ------------------------------------------------------------------

    def watch_store(self, count: Callable[[str], int]) -> None:
        """Report `jitgate_requests{state}` from `count(state)` at each scrape."""
        self.registry.register(RequestStates(count, lambda: self.store_errors.labels("store.unreachable").inc()))

    def on_change(self, change: Change) -> None:
        """Ledger listener: a committed audit event; its request's new state is counted once."""
        rec = change.request
        if rec is None or rec.state not in STATES:
            return
        moved = {
            "request.created": rec.state,  # PENDING, or DENIED/ACTIVE at once (their own events follow)
            "grant.activated": ACTIVE, "request.denied": DENIED,
            "request.cancelled": CANCELLED, "request.timed_out": TIMED_OUT, "grant.expired": EXPIRED,
            "grant.revoked": REVOKED,
        }.get(change.type)
        if change.type == "request.created" and rec.state != PENDING:
            moved = None  # counted by the grant.activated / request.denied of the same commit
        if moved is not None:
            self.transitions.labels(moved).inc()

    def observe_decision(self, seconds: float) -> None:
        self.decision.observe(seconds)

    # -- the interceptor ----------------------------------------------------------------------

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        # Wrapped once per method and handler, not per call (grpc.aio hands back the same handler).
        hit = self._wrapped.get(details.method)
        if hit is None or hit[0] is not handler:
            hit = (handler, self._wrap(handler, method_label(details.method)))
            if len(self._wrapped) < 256:
                self._wrapped[details.method] = hit
        return hit[1]

    def _wrap(self, handler: Any, label: str) -> Any:
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, label))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, label))
        return handler

    def _finish(self, label: str, context: Any, started: float, failed: BaseException | None) -> None:
        code = "OK"
        if failed is not None:
            try:
                status = context.code()
            except Exception:
                status = None
            code = status.name if isinstance(status, grpc.StatusCode) else (
                "CANCELLED" if isinstance(failed, BaseException) and type(failed).__name__ == "CancelledError"
                else "UNKNOWN")
            try:
                reason = reason_of(_Trailers(context))  # type: ignore[arg-type]
            except Exception:
                reason = ""
            if reason.startswith("store."):
                self.store_errors.labels(store_code_label(reason)).inc()
        self.rpc.labels(label, code).observe(time.perf_counter() - started)

    def _unary(self, inner: Callable[..., Any], label: str) -> Callable[..., Any]:
        async def behavior(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                resp = await inner(request, context)
            except BaseException as exc:
                self._finish(label, context, started, exc)
                raise
            self._finish(label, context, started, None)
            return resp

        return behavior

    def _stream(self, inner: Callable[..., Any], label: str) -> Callable[..., Any]:
        watch = label in ("AccessService/WatchEvents", "AccessService/WatchEventBatches")
        batches = label == "AccessService/WatchEventBatches"

        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            if watch:
                self.watchers.inc()
            try:
                async for item in inner(request, context):
                    if watch:
                        now = time.time()
                        for event in item.events if batches else (item,):
                            if event.seq and event.HasField("at"):
                                # Seconds since the epoch from the Timestamp's fields: a batch holds
                                # thousands of events, and ToDatetime is pure Python.
                                at = event.at.seconds + event.at.nanos / 1e9
                                self.event_lag.observe(max(0.0, now - at))
                    yield item
            except BaseException as exc:
                self._finish(label, context, started, exc)
                raise
            finally:
                if watch:
                    self.watchers.dec()
            self._finish(label, context, started, None)

        return behavior


def count_in_store(store: Any) -> Callable[[str], int]:
    """`count(state)` over the store's requests (one read per state at each scrape)."""

    def count(state: str) -> int:
        with store.read() as tx:
            return int(tx.count_requests(states=[state]))

    return count


def start_metrics(address: str, core: Any) -> tuple[ControlPlaneMetrics | None, MetricsEndpoint | None]:
    """With an address (`--metrics`, `metrics:`): the metrics, hooked to `core`, and their endpoint;
    without one: (None, None) and nothing is measured."""
    if not address:
        return None, None
    metrics = ControlPlaneMetrics(CollectorRegistry(auto_describe=True))
    core.ledger.subscribe(metrics.on_change)
    core.requests.decision_observer = metrics.observe_decision
    metrics.watch_store(count_in_store(core.ledger.store))
    endpoint = serve_metrics(address, metrics.registry)
    log.info("metrics on http://%s/metrics", endpoint.address)
    return metrics, endpoint


__all__ = ["STATES", "ControlPlaneMetrics", "RequestStates", "count_in_store", "method_label", "start_metrics"]
