"""A destination's settings: checked once, stored as JSON, secrets apart.

Every kind has a URL (or, for S3, a bucket), a format, an optional filter
(a search query), batching limits, kind-specific settings and secrets:

- webhook: url https://…; secrets signing_secret (whsec_…, generated if absent)
- splunk_hec: url https://host:8088; settings index, source, sourcetype,
  host, ack; secrets token
- syslog: url tcp://host:port or tls://host:port; settings app_name,
  hostname, facility, ca_pem, server_name; secrets client_cert_pem,
  client_key_pem
- datadog: url from the site (https://http-intake.logs.<site>); settings
  site, service, ddsource, ddtags; secrets api_key
- s3: url the endpoint (optional); settings bucket, prefix, region,
  ca_pem; secrets access_key_id, secret_access_key

Plain ``http://`` and ``tcp://`` are accepted only to addresses the
operator allow-listed (KIMONAUDIT_DESTINATION_ALLOWLIST), e.g. a receiver
on loopback in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from kimonaudit.core.destination_records import KIND_FORMATS, KINDS
from kimonaudit.errors import InvalidInput
from kimonaudit.sinks import webhooks

# Upper bounds per kind (the receivers' documented limits).
MAX_BATCH_EVENTS = {"webhook": 10_000, "splunk_hec": 10_000, "syslog": 10_000,
                    "datadog": 1_000, "s3": 100_000}  # fmt: skip
MAX_BATCH_BYTES = {"webhook": 10_000_000, "splunk_hec": 10_000_000, "syslog": 50_000_000,
                   "datadog": 5_000_000, "s3": 100_000_000}  # fmt: skip
DATADOG_MAX_EVENT_BYTES = 1_000_000

SETTINGS: dict[str, tuple[str, ...]] = {
    "webhook": (),
    "splunk_hec": ("index", "source", "sourcetype", "host", "ack"),
    "syslog": ("app_name", "hostname", "facility", "ca_pem", "server_name"),
    "datadog": ("site", "service", "ddsource", "ddtags"),
    "s3": ("bucket", "prefix", "region", "ca_pem"),
}
SECRETS: dict[str, tuple[str, ...]] = {
    "webhook": ("signing_secret",),
    "splunk_hec": ("token",),
    "syslog": ("client_cert_pem", "client_key_pem"),
    "datadog": ("api_key",),
    "s3": ("access_key_id", "secret_access_key"),
}
REQUIRED_SECRETS: dict[str, tuple[str, ...]] = {
    "splunk_hec": ("token",),
    "datadog": ("api_key",),
    "s3": ("access_key_id", "secret_access_key"),
}
SCHEMES = {
    "webhook": ("https", "http"),
    "splunk_hec": ("https", "http"),
    "syslog": ("tls", "tcp"),
    "datadog": ("https", "http"),
    "s3": ("https", "http"),
}
DEFAULT_PORTS = {"https": 443, "http": 80, "tls": 6514, "tcp": 514}
DATADOG_SITES = ("datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com",
                 "datadoghq.eu", "ap1.datadoghq.com", "ddog-gov.com")  # fmt: skip


@dataclass(frozen=True)
class Batching:
    max_events: int = 500
    max_bytes: int = 1_000_000
    max_wait_ms: int = 1_000


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    url: str  # as given (no credentials)

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "tls")


def parse_endpoint(kind: str, url: str) -> Endpoint:
    if not isinstance(url, str) or not url:
        raise InvalidInput("a URL is required", field="url")
    if len(url) > 2000:
        raise InvalidInput("is longer than 2000 characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"not a URL: {exc}", field="url") from None
    if parts.scheme not in SCHEMES[kind]:
        raise InvalidInput(
            f"a {kind} destination needs a {' or '.join(SCHEMES[kind])} URL", field="url"
        )
    if not parts.hostname:
        raise InvalidInput("the URL has no host", field="url")
    if parts.username or parts.password:
        raise InvalidInput("put credentials in the secrets, not in the URL", field="url")
    if parts.fragment:
        raise InvalidInput("the URL may not have a #fragment", field="url")
    return Endpoint(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme], url)


def default_url(kind: str, settings: Mapping[str, Any]) -> str | None:
    """The URL a kind derives from its settings when none is given."""
    if kind == "datadog":
        return f"https://http-intake.logs.{settings.get('site', 'datadoghq.com')}/api/v2/logs"
    if kind == "s3":
        return f"https://s3.{settings.get('region', 'us-east-1')}.amazonaws.com"
    return None


def check_ca_pem(pem: str) -> None:
    """InvalidInput unless `pem` holds at least one CA certificate."""
    import ssl

    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise InvalidInput("is not a PEM CA certificate", field="settings.ca_pem") from None


def _batching(kind: str, raw: Mapping[str, Any] | None) -> Batching:
    raw = dict(raw or {})
    unknown = set(raw) - {"max_events", "max_bytes", "max_wait_ms"}
    if unknown:
        raise InvalidInput(f"unknown batch setting {sorted(unknown)[0]!r}", field="batch")
    b = Batching(
        **{
            k: v
            for k, v in {
                "max_events": raw.get("max_events"),
                "max_bytes": raw.get("max_bytes"),
                "max_wait_ms": raw.get("max_wait_ms"),
            }.items()
            if v is not None
        }
    )
    for name, value, low, high in (
        ("max_events", b.max_events, 1, MAX_BATCH_EVENTS[kind]),
        ("max_bytes", b.max_bytes, 1_024, MAX_BATCH_BYTES[kind]),
        ("max_wait_ms", b.max_wait_ms, 0, 3_600_000),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"must be an integer from {low} to {high}", field=f"batch.{name}")
    return b


def normalize(
    kind: str,
    fmt: str | None,
    url: str | None,
    settings: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
    batch: Mapping[str, Any] | None,
    filter_: str,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(config, secrets, generated secrets) for a new destination, or
    InvalidInput naming the bad field."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}; one of {', '.join(KINDS)}", field="kind")
    fmt = fmt or KIND_FORMATS[kind][0]
    if fmt not in KIND_FORMATS[kind]:
        raise InvalidInput(
            f"a {kind} destination carries {', '.join(KIND_FORMATS[kind])}", field="format"
        )
    settings = dict(settings or {})
    for key in settings:
        if key not in SETTINGS[kind]:
            allowed = ", ".join(SETTINGS[kind]) or "none"
            raise InvalidInput(f"unknown {kind} setting {key!r} (allowed: {allowed})", "settings")
    for key, value in settings.items():
        if key == "ack":
            if not isinstance(value, bool):
                raise InvalidInput("must be true or false", field="settings.ack")
        elif key == "facility":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 23:
                raise InvalidInput("must be an integer from 0 to 23", field="settings.facility")
        elif not isinstance(value, str) or len(value) > 20_000:
            raise InvalidInput("must be a string", field=f"settings.{key}")
        elif key == "ca_pem":
            check_ca_pem(value)
    secrets = dict(secrets or {})
    for key, value in secrets.items():
        if key not in SECRETS[kind]:
            raise InvalidInput(f"unknown {kind} secret {key!r}", field="secrets")
        if not isinstance(value, str) or not value:
            raise InvalidInput("must be a non-empty string", field=f"secrets.{key}")
    for key in REQUIRED_SECRETS.get(kind, ()):
        if key not in secrets:
            raise InvalidInput(f"a {kind} destination needs it", field=f"secrets.{key}")
    generated: dict[str, str] = {}
    if kind == "webhook":
        if "signing_secret" in secrets:
            try:
                webhooks.secret_bytes(secrets["signing_secret"])
            except InvalidInput as exc:  # named by the field it came in
                raise InvalidInput(exc.reason, field="secrets.signing_secret") from None
        else:
            secrets["signing_secret"] = generated["signing_secret"] = webhooks.new_secret()
        secrets = {"signing_secrets": [{"secret": secrets["signing_secret"], "expires_at": None}]}
    if kind == "datadog":
        site = settings.get("site", "datadoghq.com")
        if site not in DATADOG_SITES:
            raise InvalidInput(f"one of {', '.join(DATADOG_SITES)}", field="settings.site")
    if kind == "s3" and not settings.get("bucket"):
        raise InvalidInput("an s3 destination needs a bucket", field="settings.bucket")
    url = url or default_url(kind, settings)
    if kind == "syslog" and "client_cert_pem" in secrets and "client_key_pem" not in secrets:
        raise InvalidInput("a client certificate needs its key", field="secrets.client_key_pem")
    endpoint = parse_endpoint(kind, url or "")
    if not isinstance(filter_, str) or len(filter_) > 2000:
        raise InvalidInput("must be a search query of at most 2000 characters", field="filter")
    config = {
        "url": endpoint.url,
        "filter": filter_,
        "batch": asdict(_batching(kind, batch)),
        "settings": settings,
    }
    return config, secrets, generated
