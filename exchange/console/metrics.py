"""The nodes' Prometheus metrics, through `prometheus_client`.

Each node process has its own registry (`NodeMetrics`), so that several nodes in one process
(the tests, the simulator) never mix their series. The figures a node already keeps (heights,
counters, supervision, each member's link) are read at scrape time by a collector; the two
latencies are histograms observed as they happen:

- `jinlian_finality_seconds`: sequencing to certificate, one observation per batch of commands
  sequenced together (a broker's request is one), from the exchange's `Finality` samples;
- `jinlian_ack_seconds`: a broker's sequenced request received to its answer sent (the block
  stored and its orders journalled).

The exposition is the text format 0.0.4 (`generate_latest`), values as floats (`1.0`). The
console's health page reads the same figures (`NodeMetrics.figures`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import prometheus_client
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.node import TASK_POLICIES, ExchangeNode, ReplicaNode

# `_created` series say when a process started a counter: noise for an operator's dashboards
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# seconds: finality is a few block intervals (tens of ms) up to the degraded case (seconds)
FINALITY_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACK_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# (name, kind, help, value): one unlabelled series; kind is "counter" or "gauge"
Figure = tuple[str, str, str, float]

MEMBER_METRICS: Final = (
    ("connected", "jinlian_member_connected", "1 while a socket to the member is open"),
    ("authenticated", "jinlian_member_authenticated", "1 while its link is authenticated"),
    ("last_vote_height", "jinlian_member_last_vote_height", "height of its latest vote"),
    ("clock_offset_ms", "jinlian_member_clock_offset_ms", "its clock minus ours, at handshake"),
    ("silent_redials", "jinlian_member_silent_redials_total", "links closed as silent"),
)


def metric_family(name: str, kind: str, help_: str, value: float) -> Metric:
    if kind == "counter":
        return CounterMetricFamily(name, help_, value=value)
    assert kind == "gauge", f"bad metric kind {kind!r} of {name}"
    return GaugeMetricFamily(name, help_, value=value)


def supervision_figures(node: ExchangeNode | ReplicaNode) -> Iterator[Metric]:
    """Failures by task kind, 1 while failed, and the index watermark (if the node indexes)."""
    failures = CounterMetricFamily(
        "jinlian_task_failures_total", "unhandled exceptions by task kind", labels=["task"]
    )
    for task in TASK_POLICIES:
        failures.add_metric([task], node.task_failures[task])
    yield failures
    failed = int(node.failure is not None)
    yield GaugeMetricFamily("jinlian_failed", "1 once a task failure stopped the node", failed)
    indexed = node.indexed()
    if indexed is not None:
        yield GaugeMetricFamily(
            "jinlian_indexed_height", "derived tables hold blocks 1..this", value=indexed
        )
    if node.collector is not None:  # the process's garbage-collection policy (/health `gc`)
        gc = node.collector.figures()
        yield GaugeMetricFamily(
            "jinlian_gc_frozen_objects", "objects frozen out of the cycle collector's work",
            value=gc["frozen_objects"],
        )  # fmt: skip
        yield CounterMetricFamily(
            "jinlian_gc_full_collections", "full collections, all run while idle",
            value=gc["full_collections"],
        )  # fmt: skip
        yield CounterMetricFamily(
            "jinlian_gc_full_found_objects", "garbage the full collections found (a leak grows it)",
            value=gc["full_found"],
        )  # fmt: skip


def member_figures(members: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """One series per voting member (label `member`), from `ExchangeNode.peer_status`."""
    for field_name, metric, help_ in MEMBER_METRICS:
        family: Metric
        if metric.endswith("_total"):
            family = CounterMetricFamily(metric, help_, labels=["member"])
        else:
            family = GaugeMetricFamily(metric, help_, labels=["member"])
        for name, peer in members.items():
            value = peer[field_name]
            if value is not None:
                family.add_metric([name], int(value))
        yield family


def replica_figures(node: ReplicaNode) -> Iterator[Metric]:
    """A member node's figures: its heights and its supervision."""
    yield GaugeMetricFamily("jinlian_height", "stored height", value=node.replica.height)
    yield GaugeMetricFamily(
        "jinlian_certified_height", "highest final block",
        value=node.replica.store.certified_height(),
    )  # fmt: skip
    yield from supervision_figures(node)


class _Figures(Collector):
    """The figures a node keeps, read at each scrape (`read`: none until it is set)."""

    def __init__(self, read: Callable[[], Iterable[Metric]] | None) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        return [] if self.read is None else list(self.read())


class NodeMetrics:
    """One node's registry: its figures (read at scrape time) and its latency histograms."""

    def __init__(self, figures: Callable[[], Iterable[Metric]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._figures = _Figures(figures)
        self.registry.register(self._figures)
        self.finality_seconds = Histogram(
            "jinlian_finality_seconds",
            "sequencing to certificate, per batch of commands sequenced together",
            buckets=FINALITY_BUCKETS_S,
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "jinlian_ack_seconds",
            "a broker's sequenced request received to its answer sent",
            buckets=ACK_BUCKETS_S,
            registry=self.registry,
        )
        self._finalized_commands = 0  # of the exchange's `Finality`, already observed

    def read_figures(self, figures: Callable[[], Iterable[Metric]]) -> None:
        """Read the node's figures with `figures` from now on (the gateway sets it once its
        parts are built)."""
        self._figures.read = figures

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    async def on_metrics(self, request: web.Request) -> web.StreamResponse:
        """`GET /metrics`: the Prometheus text format."""
        response = web.Response(body=self.exposition(),
                                headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def observe_ack(self, received_ns: int) -> None:
        """A request received at `received_ns` (monotonic) is answered now."""
        self.ack_seconds.observe((time.monotonic_ns() - received_ns) / 1e9)

    def observe_finality(self, node: ExchangeNode) -> None:
        """Observe the exchange's finality samples added since the last call (a final
        listener: called after each certificate, once `Finality` holds its samples)."""
        finality = node.finality
        new = finality.finalized_commands - self._finalized_commands
        self._finalized_commands = finality.finalized_commands
        latencies: list[float] = []
        for _, count, latency_ms in reversed(finality.samples):
            if new <= 0:
                break
            new -= count
            latencies.append(latency_ms / 1e3)
        for latency_s in reversed(latencies):
            self.finality_seconds.observe(latency_s)

    def figures(self) -> dict[str, float]:
        """Every unlabelled series by name, and each histogram's count and sum: what the
        console's health page shows beside `/health`."""
        values: dict[str, float] = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                if not sample.labels:
                    values[sample.name] = sample.value
        return values


def replica_metrics(node: ReplicaNode) -> NodeMetrics:
    """A member node's metrics."""
    return NodeMetrics(lambda: replica_figures(node))


def serve_replica_metrics(node: ReplicaNode) -> NodeMetrics:
    """Answer the member node's `GET /metrics` from `prometheus_client` (before it starts):
    the ledger's own handler (stdlib text, the ledger may not depend on prometheus_client)
    stays for nodes built without the exchange, and is shadowed here by a middleware."""
    metrics = replica_metrics(node)

    @web.middleware
    async def metrics_route(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/metrics" and request.method == "GET":
            return await metrics.on_metrics(request)
        return await handler(request)  # type: ignore[no-any-return]

    node.app.middlewares.append(metrics_route)
    return metrics
