"""Prometheus metrics in the text exposition format (version 0.0.4).

A few thread-safe instruments and a renderer: enough for what `serve`
exports, without a client library. Label values are escaped per the format.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: group commits are ms-scale, a slow disk pushes into the tail.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]
_LE_INF = 'le="+Inf"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class Counter:
    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        if not items:
            yield f"{self.name} 0"
        for labels, v in items:
            yield f"{self.name}{_labels(labels)} {_num(v)}"


class Gauge:
    """A gauge read at scrape time from a callback."""

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name, self.help, self._read = name, help, read

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {_num(self._read())}"


class Histogram:
    def __init__(
        self,
        name: str,
        help: str,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.help = name, help
        self.bounds = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # counts per bucket, then sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            s = self._series.get(key)
            if s is None:
                s = self._series[key] = [0.0] * (len(self.bounds) + 2)
            if i < len(self.bounds):
                s[i] += 1
            s[-2] += value
            s[-1] += 1

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            series = sorted((k, list(v)) for k, v in self._series.items())
        if not series:
            series = [((), [0.0] * (len(self.bounds) + 2))]
        for labels, s in series:
            cumulative = 0.0
            for bound, n in zip(self.bounds, s, strict=False):
                cumulative += n
                le = f'le="{_num(bound)}"'
                yield f"{self.name}_bucket{_labels(labels, le)} {_num(cumulative)}"
            yield f"{self.name}_bucket{_labels(labels, _LE_INF)} {_num(s[-1])}"
            yield f"{self.name}_sum{_labels(labels)} {_num(s[-2])}"
            yield f"{self.name}_count{_labels(labels)} {_num(s[-1])}"


class Registry:
    def __init__(self) -> None:
        self._metrics: list[Counter | Gauge | Histogram] = []

    def add(self, metric: Counter | Gauge | Histogram) -> None:
        self._metrics.append(metric)

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The instruments `serve` exports; gauges are added by create_app,
    which knows where their values live."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.events_appended = Counter(
            "kimonaudit_events_appended_total", "Events accepted through the HTTP API."
        )
        self.append_seconds = Histogram(
            "kimonaudit_append_duration_seconds",
            "Time AuditLog.append took per request (validation, group commit).",
        )
        self.requests = Counter(
            "kimonaudit_http_requests_total", "HTTP requests by method, route and status."
        )
        self.request_seconds = Histogram(
            "kimonaudit_http_request_duration_seconds", "HTTP request latency by route."
        )
        self.checkpoints = Counter(
            "kimonaudit_checkpoints_total", "Checkpoints cut by the background job."
        )
        for m in (
            self.events_appended,
            self.append_seconds,
            self.checkpoints,
            self.requests,
            self.request_seconds,
        ):
            self.registry.add(m)

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.registry.add(Gauge(name, help, read))
