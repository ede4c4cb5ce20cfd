"""Webhooks signed per Standard Webhooks.

One POST per batch, ``Content-Type: application/json``, body::

    {"type": "audit.batch", "timestamp": "<batch creation, RFC 3339>",
     "data": {"tenant_id", "destination_id", "first_seq", "last_seq",
              "events": [<rendered events and checkpoints>]}}

The body bytes and ``webhook-id`` are the same on every attempt of a batch
(so a receiver can de-duplicate); ``webhook-timestamp`` and the signature
are those of the attempt.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from kimonaudit.core.timefmt import format_ts
from kimonaudit.destinations import live_signing_secrets
from kimonaudit.sinks import webhooks
from kimonaudit.sinks.transports.base import (
    Batch,
    Outcome,
    PinnedHttp,
    Target,
    http_outcome,
    transport_error,
)


def body(target: Target, batch: Batch) -> bytes:
    """The JSON body; the rendered events are spliced in as serialised."""
    head = json.dumps(
        {
            "type": "audit.batch",
            "timestamp": format_ts(batch.created_at),
            "data": {
                "tenant_id": target.tenant_id,
                "destination_id": target.destination_id,
                "first_seq": batch.first,
                "last_seq": batch.last,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    events = ",".join(
        r if r[:1] == "{" else json.dumps(r, ensure_ascii=False) for r in batch.rendered
    )
    return (head[:-2] + ',"events":[' + events + "]}}").encode()


class WebhookTransport:
    def __init__(self, target: Target, secrets: dict[str, Any], timeout: float) -> None:
        self.target = target
        self.secrets = secrets
        self.http = PinnedHttp(target, timeout)

    def send(self, batch: Batch) -> Outcome:
        content = body(self.target, batch)
        now = time.time()
        signing = live_signing_secrets(self.secrets, int(now * 1_000_000))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "KimonAudit-Webhooks/1",
            **webhooks.headers(signing, batch.msg_id, int(now), content),
        }
        try:
            resp = self.http.post(self.target.url, content, headers)
        except httpx.HTTPError as exc:
            return transport_error(exc)
        return http_outcome(resp)

    def close(self) -> None:
        self.http.close()
