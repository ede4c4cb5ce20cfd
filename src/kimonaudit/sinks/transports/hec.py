"""Splunk HTTP Event Collector.

``POST <url>/services/collector/event``, ``Authorization: Splunk <token>``,
a body of stacked JSON objects (one per event, no separators needed):
``{"time": <epoch seconds, 3 decimals>, "host", "source", "sourcetype",
"index", "event": <rendered event>, "fields": {"tenant_id", "seq", "type",
"action"}}``. With the ``ack`` setting, requests carry the channel
``X-Splunk-Request-Channel`` (a UUID derived from the destination) and a
batch counts as delivered only once ``/services/collector/ack`` confirms
its ``ackId``.

HEC status codes: 8 (internal error) and 9 (server busy), HTTP 5xx and 429
are retried; 1-4 (token disabled, required, invalid authorization, invalid
token), 7 (incorrect index), 10/11 (channel missing or invalid), 14 (ack
disabled) and 16 cannot succeed by retrying: the destination is paused with
the reason. Other 4xx are retried on the schedule.
"""

from __future__ import annotations

import json
import time
import uuid
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

GIVE_UP_CODES = {1, 2, 3, 4, 7, 10, 11, 14, 16}
RETRY_CODES = {8, 9}


def channel_of(destination_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kimonaudit:{destination_id}"))


def stacked(target: Target, batch: Batch) -> bytes:
    s = target.settings
    parts = []
    for ev, rendered in zip(batch.events, batch.rendered, strict=True):
        obj: dict[str, Any] = {
            "time": round(ev.time_us / 1_000_000, 3),
            "host": s.get("host") or "kimonaudit",
            "source": s.get("source") or f"kimonaudit:{ev.tenant_id}",
            "sourcetype": s.get("sourcetype")
            or {"json": "_json", "ocsf": "ocsf", "cef": "cef"}[batch.format or target.format],
            "fields": {
                "tenant_id": ev.tenant_id,
                "seq": ev.seq,
                "type": ev.type,
                "action": ev.data.get("action", ev.type),
            },
        }
        if s.get("index"):
            obj["index"] = s["index"]
        event = rendered if rendered[:1] == "{" else json.dumps(rendered, ensure_ascii=False)
        head = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        parts.append(head[:-1] + ',"event":' + event + "}")
    return "\n".join(parts).encode()


class HecTransport:
    def __init__(self, target: Target, secrets: dict[str, Any], timeout: float) -> None:
        self.target = target
        self.token = secrets["token"]
        self.timeout = timeout
        self.http = PinnedHttp(target, timeout)
        self.ack = bool(target.settings.get("ack"))
        self.base = target.url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        h = {"Authorization": f"Splunk {self.token}", "Content-Type": "application/json"}
        if self.ack:
            h["X-Splunk-Request-Channel"] = channel_of(self.target.destination_id)
        return h

    def _outcome(self, resp: httpx.Response) -> Outcome:
        try:
            doc = resp.json()
        except ValueError:
            doc = {}
        code = doc.get("code") if isinstance(doc, dict) else None
        if 200 <= resp.status_code < 300 and code in (0, None):
            return Outcome(True)
        out = http_outcome(resp)
        if isinstance(code, int):
            error = f"HEC code {code}: {doc.get('text', '')} (HTTP {resp.status_code})"
            if code in GIVE_UP_CODES:
                return Outcome(False, error, give_up=True)
            return Outcome(False, error, retry_after=out.retry_after)
        return out

    def send(self, batch: Batch) -> Outcome:
        try:
            resp = self.http.post(f"{self.base}/services/collector/event",
                                  stacked(self.target, batch), self._headers())  # fmt: skip
            outcome = self._outcome(resp)
            if not outcome.ok or not self.ack:
                return outcome
            ack_id = resp.json().get("ackId")
            if not isinstance(ack_id, int):
                return Outcome(False, "HEC acknowledgement is on but no ackId came back")
            return self._await_ack(ack_id)
        except httpx.HTTPError as exc:
            return transport_error(exc)

    def _await_ack(self, ack_id: int) -> Outcome:
        deadline = time.monotonic() + self.timeout
        body = json.dumps({"acks": [ack_id]}).encode()
        while time.monotonic() < deadline:
            resp = self.http.post(f"{self.base}/services/collector/ack", body, self._headers())
            if resp.status_code != 200:
                return self._outcome(resp)
            if resp.json().get("acks", {}).get(str(ack_id)):
                return Outcome(True)
            time.sleep(0.1)
        return Outcome(False, f"HEC did not acknowledge ackId {ack_id} in {self.timeout:g} s")

    def close(self) -> None:
        self.http.close()
