"""What every transport shares: the batch it is given, the outcome it
reports, and HTTP plumbing that connects to the address the SSRF guard
checked (never re-resolving the name) and never follows redirects."""

from __future__ import annotations

import email.utils
import ipaddress
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from kimonaudit.sinks.events import StreamEvent


@dataclass(frozen=True)
class Target:
    """Where a destination's requests go. `address` is the IP the guard
    approved for `host`; `settings` the destination's non-secret settings."""

    destination_id: str
    tenant_id: str
    url: str
    host: str
    address: str
    format: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class Batch:
    """Entries seq in [first, end) that matched, then the checkpoints that
    they complete, rendered in the destination's format as text (a CEF
    line, or JSON serialised once: transports embed it unchanged). `msg_id` is the
    same on every attempt of this batch; `created_at` (µs) too."""

    msg_id: str
    first: int
    end: int
    events: Sequence[StreamEvent]
    rendered: Sequence[str]
    created_at: int
    attempt: int = 0
    # The first checkpoint whose tree covers every entry of the batch (S3 manifests).
    covering: Any = None
    # The format it was rendered in ("" = the destination's): a batch saved
    # for retry keeps the format it was formed in after a change.
    format: str = ""

    @property
    def last(self) -> int:
        return self.end - 1


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str = ""
    gone: bool = False  # the receiver said 410 Gone: disable the destination
    retry_after: float | None = None  # seconds the receiver asked us to wait
    give_up: bool = False  # retrying cannot help (bad token, unknown index): pause now


class Transport(Protocol):
    def send(self, batch: Batch) -> Outcome: ...
    def close(self) -> None: ...


class PinnedHttp:
    """An httpx client whose requests go to the checked address, with the
    real host name in the Host header and as TLS SNI / certificate name.

    The name is never resolved here: the connection is opened to
    `target.address` (what the SSRF guard approved), so a DNS answer that
    changed after the check is never used. Certificates are verified for the
    name, against the system CAs or the destination's `ca_pem` setting."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        ca_pem = target.settings.get("ca_pem")
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cadata=ca_pem) if ca_pem else True
        )
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False, verify=verify
        )

    def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> httpx.Response:
        return self.request("POST", url, content, headers)

    def request(
        self, method: str, url: str, content: bytes | None, headers: Mapping[str, str]
    ) -> httpx.Response:
        u = httpx.URL(url)
        if u.host.lower() != self.target.host.lower():
            # Only the checked host may be reached through this client.
            raise httpx.InvalidURL(f"{u.host!r} is not the checked host {self.target.host!r}")
        ip = ipaddress.ip_address(self.target.address)
        request = self.client.build_request(
            method,
            u.copy_with(host=str(ip)),
            content=content,
            # httpx drops a default port from netloc, as signers (SigV4) do.
            headers={**headers, "Host": u.netloc.decode("ascii")},
            extensions={"sni_hostname": u.host},
        )
        return self.client.send(request)

    def close(self) -> None:
        self.client.close()


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_outcome(resp: httpx.Response) -> Outcome:
    """2xx ok; 410 gone; anything else a failure to retry (a 3xx included:
    redirects are not followed)."""
    if 200 <= resp.status_code < 300:
        return Outcome(True)
    body = resp.text[:200].replace("\n", " ") if resp.content else ""
    error = f"HTTP {resp.status_code}" + (f": {body}" if body else "")
    if 300 <= resp.status_code < 400:
        error += " (redirects are not followed)"
    return Outcome(
        False,
        error,
        gone=resp.status_code == 410,
        retry_after=retry_after(resp.headers.get("retry-after")),
    )


def transport_error(exc: Exception) -> Outcome:
    kind = type(exc).__name__
    return Outcome(False, f"{kind}: {exc}"[:300] if str(exc) else kind)
