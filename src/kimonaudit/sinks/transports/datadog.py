"""Datadog logs intake (HTTP API v2).

``POST https://http-intake.logs.<site>/api/v2/logs`` with ``DD-API-KEY``,
``Content-Type: application/json`` and ``Content-Encoding: gzip``; the
body is a JSON array of logs ``{"ddsource", "ddtags", "hostname",
"service", "message", "kimonaudit": {"tenant_id", "seq", "type"}}``, where
`message` is the rendered event (JSON text for json/ocsf, the CEF line for
cef). The batcher keeps within the intake's limits: at most 1,000 logs and
5 MB uncompressed per request (a destination's `batch` cannot be set
higher); a single log over 1 MB is truncated by Datadog. 202 is success;
400 and 413 are the limits (retried on the schedule), 403 a bad key
(paused at once).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx

from kimonaudit.sinks.transports.base import (
    Batch,
    Outcome,
    PinnedHttp,
    Target,
    http_outcome,
    transport_error,
)

MAX_LOGS = 1_000
MAX_PAYLOAD = 5 * 1024 * 1024
MAX_LOG = 1024 * 1024


def payload(target: Target, batch: Batch) -> bytes:
    s = target.settings
    logs = []
    for ev, rendered in zip(batch.events, batch.rendered, strict=True):
        logs.append(
            {
                "ddsource": s.get("ddsource") or "kimonaudit",
                "ddtags": s.get("ddtags") or f"tenant:{ev.tenant_id}",
                "hostname": "kimonaudit",
                "service": s.get("service") or "kimonaudit",
                "message": rendered,
                "kimonaudit": {"tenant_id": ev.tenant_id, "seq": ev.seq, "type": ev.type},
            }
        )
    return json.dumps(logs, ensure_ascii=False, separators=(",", ":")).encode()


class DatadogTransport:
    def __init__(self, target: Target, secrets: dict[str, Any], timeout: float) -> None:
        self.target = target
        self.key = secrets["api_key"]
        self.http = PinnedHttp(target, timeout)

    def send(self, batch: Batch) -> Outcome:
        raw = payload(self.target, batch)
        if len(batch.events) > MAX_LOGS or len(raw) > MAX_PAYLOAD:
            return Outcome(False, "batch over the Datadog intake limits", give_up=True)
        headers = {
            "DD-API-KEY": self.key,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        try:
            resp = self.http.post(self.target.url, gzip.compress(raw), headers)
        except httpx.HTTPError as exc:
            return transport_error(exc)
        out = http_outcome(resp)
        if resp.status_code == 403:
            return Outcome(False, out.error, give_up=True)
        return out

    def close(self) -> None:
        self.http.close()
