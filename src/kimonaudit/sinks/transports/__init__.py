"""Transports: each turns a rendered batch into requests to one kind of
receiver and says how it went (`base.Outcome`). `open_transport` picks one
by destination kind."""

from __future__ import annotations

from typing import Any

from kimonaudit.sinks.transports.base import Batch, Outcome, Target, Transport


def open_transport(kind: str, target: Target, secrets: dict[str, Any], timeout: float) -> Transport:
    if kind == "webhook":
        from kimonaudit.sinks.transports.webhook import WebhookTransport

        return WebhookTransport(target, secrets, timeout)
    if kind == "splunk_hec":
        from kimonaudit.sinks.transports.hec import HecTransport

        return HecTransport(target, secrets, timeout)
    if kind == "syslog":
        from kimonaudit.sinks.transports.syslog import SyslogTransport

        return SyslogTransport(target, secrets, timeout)
    if kind == "datadog":
        from kimonaudit.sinks.transports.datadog import DatadogTransport

        return DatadogTransport(target, secrets, timeout)
    if kind == "s3":
        from kimonaudit.sinks.transports.s3 import S3Transport

        return S3Transport(target, secrets, timeout)
    raise ValueError(f"unknown destination kind {kind!r}")


__all__ = ["Batch", "Outcome", "Target", "Transport", "open_transport"]
