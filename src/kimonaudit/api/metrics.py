"""Prometheus metrics through `prometheus_client`.

One process: the instruments live in a registry of their own, rendered at
`/metrics`. Several `serve` processes (behind one load balancer, on one
PostgreSQL): give them one shared, empty directory in
``PROMETHEUS_MULTIPROC_DIR`` (or ``kimonaudit serve --metrics-dir``) and
prometheus_client's multiprocess mode is used: each process writes its
counters and histograms to files there, and `/metrics` on any of them
reports the totals of all. The gauges are read at scrape time from the
process that answers (its checkpoint age, its writer queue).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

M = TypeVar("M", Counter, Histogram)

# Seconds: group commits are ms-scale, a slow disk pushes into the tail.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# `_created` series say when a process made each counter; with several
# processes (and restarts) they are noise.
disable_created_metrics()


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, when it is on."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Gauges(Collector):
    """Gauges read from callbacks when scraped (this process's values)."""

    def __init__(self) -> None:
        self.gauges: list[tuple[str, str, Callable[[], float]]] = []

    def collect(self) -> Iterator[Metric]:
        for name, help_text, read in self.gauges:
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], float(read()))
            yield family


class _Labelled(Generic[M]):
    """A prometheus_client metric whose children are looked up by the label
    values given as keywords. prometheus_client checks the label names on
    every labels() call; a request's few label sets repeat, so their
    children are kept."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._labelled = bool(metric._labelnames)
        self._children: dict[tuple[tuple[str, str], ...], M] = {}

    def _child(self, labels: dict[str, str]) -> M:
        if not self._labelled:
            return self._metric
        key = tuple(labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metric.labels(**labels)
        return child


class _LabelledCounter(_Labelled[Counter]):
    """`inc(amount, **labels)` over a prometheus_client Counter."""

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)


class _LabelledHistogram(_Labelled[Histogram]):
    """`observe(value, **labels)` over a prometheus_client Histogram."""

    def observe(self, value: float, **labels: str) -> None:
        self._child(labels).observe(value)


class Registry:
    """What `/metrics` renders."""

    def __init__(self, collectors: CollectorRegistry, gauges: _Gauges) -> None:
        self._own = collectors
        self._gauges = gauges
        self._extra: list[Collector] = []  # per-process collectors of other modules

    def render(self) -> str:
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self._own).decode("utf-8")
        # Every process's counters and histograms, and this process's gauges.
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path)
        merged.register(self._gauges)
        for c in self._extra:
            merged.register(c)
        return generate_latest(merged).decode("utf-8")


class ServerMetrics:
    """The instruments `serve` exports; gauges are added by create_app,
    which knows where their values live."""

    def __init__(self) -> None:
        own = CollectorRegistry(auto_describe=True)
        self._gauges = _Gauges()
        own.register(self._gauges)
        self.registry = Registry(own, self._gauges)
        self.events_appended = _LabelledCounter(
            Counter(
                "kimonaudit_events_appended",
                "Events accepted through the HTTP API.",
                registry=own,
            )
        )
        self.append_seconds = _LabelledHistogram(
            Histogram(
                "kimonaudit_append_duration_seconds",
                "Time AuditLog.append took per request (validation, group commit).",
                buckets=LATENCY_BUCKETS,
                registry=own,
            )
        )
        self.requests = _LabelledCounter(
            Counter(
                "kimonaudit_http_requests",
                "HTTP requests by method, route and status.",
                ["method", "route", "status"],
                registry=own,
            )
        )
        self.request_seconds = _LabelledHistogram(
            Histogram(
                "kimonaudit_http_request_duration_seconds",
                "HTTP request latency by route.",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=own,
            )
        )
        self.checkpoints = _LabelledCounter(
            Counter(
                "kimonaudit_checkpoints",
                "Checkpoints cut by the background job.",
                registry=own,
            )
        )
        self.client_disconnects = _LabelledCounter(
            Counter(
                "kimonaudit_http_client_disconnects",
                "Requests whose client went away before the body was read "
                "(nothing was appended; not counted as errors).",
                ["method", "route"],
                registry=own,
            )
        )

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._gauges.gauges.append((name, help, read))

    def collector(self, collector: Collector) -> None:
        """A collector read at scrape time in this process, like the gauges
        (e.g. the per-destination delivery gauges)."""
        self.registry._own.register(collector)
        self.registry._extra.append(collector)
