"""Delivery as a background job (inside `kimonaudit serve`, or alone as
`kimonaudit deliver`), a test delivery, and the per-destination metrics."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from kimonaudit.destinations import Destinations
from kimonaudit.errors import AuditLogError
from kimonaudit.sinks.delivery import Deliverer
from kimonaudit.sinks.events import from_checkpoint
from kimonaudit.sinks.formats import text_renderer
from kimonaudit.sinks.transports import Batch, Outcome, Target, open_transport

log = logging.getLogger("kimonaudit.delivery")


class DeliveryJob:
    """Runs a Deliverer in a thread until stopped."""

    def __init__(self, deliverer: Deliverer, interval: float = 0.5) -> None:
        self.deliverer = deliverer
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.deliverer.run,
            args=(self._stop, self.interval),
            name="kimonaudit-delivery",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.deliverer.close()


def send_test(dests: Destinations, tenant_id: str, destination_id: str) -> Outcome:
    """Send the tenant's newest signed checkpoint (cut one if there is none)
    to the destination, as a one-off message that moves no cursor."""
    rec = dests._record(tenant_id, destination_id)
    import json

    cfg = json.loads(rec.config)
    try:
        address = dests.check_endpoint(rec.kind, cfg["url"])
    except AuditLogError as exc:
        return Outcome(False, exc.message)
    cp = dests.log.latest_checkpoint(tenant_id) or dests.log.checkpoint(tenant_id)
    ev = from_checkpoint(cp)
    target = Target(
        rec.destination_id, tenant_id, cfg["url"], urlsplit(cfg["url"]).hostname or "",
        address, rec.format, cfg["settings"],
    )  # fmt: skip
    transport = open_transport(rec.kind, target, dests.secrets(rec), 10.0)
    try:
        batch = Batch(
            f"msg_{rec.destination_id}_test_{secrets.token_hex(6)}",
            cp.size, cp.size, [ev], [text_renderer(rec.format)(ev)], dests.log.now_us(),
        )  # fmt: skip
        return transport.send(batch)
    finally:
        transport.close()


class DestinationMetrics:
    """A prometheus_client collector: gauges per destination, read at scrape time."""

    GAUGES = (
        ("kimonaudit_destination_lag_events", "Entries not yet delivered.", "lag_events"),
        ("kimonaudit_destination_lag_seconds", "Age of the oldest undelivered entry.",
         "lag_seconds"),
        ("kimonaudit_destination_delivered_events_total", "Entries delivered.",
         "delivered_events"),
        ("kimonaudit_destination_delivered_checkpoints_total", "Checkpoints delivered.",
         "delivered_checkpoints"),
        ("kimonaudit_destination_failed_attempts_total", "Failed delivery attempts.",
         "failed_attempts"),
        ("kimonaudit_destination_last_success_timestamp_seconds",
         "Unix time of the last successful delivery (0: never).", "last_success"),
        ("kimonaudit_destination_up", "1 if active and not failing, else 0.", "up"),
    )  # fmt: skip
    LABELS = ("tenant", "destination", "kind", "state")

    def __init__(self, dests: Destinations) -> None:
        self.dests = dests

    def rows(self) -> list[tuple[list[str], dict[str, float]]]:
        rows: list[tuple[list[str], dict[str, float]]] = []
        try:
            for rec in self.dests.store.list_destinations(None):
                h = self.dests.view(rec).health
                d = h.delivery
                rows.append(
                    (
                        [rec.tenant_id, rec.destination_id, rec.kind, rec.state],
                        {
                            "lag_events": h.lag_events,
                            "lag_seconds": h.lag_seconds,
                            "delivered_events": d.delivered_events,
                            "delivered_checkpoints": d.delivered_checkpoints,
                            "failed_attempts": d.failed_attempts,
                            "last_success": (d.last_success_at or 0) / 1e6,
                            "up": 1 if h.status in ("ok", "idle", "lagging") else 0,
                        },
                    )
                )
        except AuditLogError:
            log.warning("could not read destinations for /metrics", exc_info=True)
        return rows

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        rows = self.rows()
        for name, help_, key in self.GAUGES:
            family = GaugeMetricFamily(name, help_, labels=self.LABELS)
            for labels, values in rows:
                family.add_metric(labels, float(values[key]))
            yield family

    def describe(self) -> Iterable[Any]:
        return []  # read at scrape time; nothing to describe in advance
