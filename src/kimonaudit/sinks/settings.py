"""The streaming's settings, declared once (see kimonaudit.settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kimonaudit.errors import ConfigError
from kimonaudit.settings import Setting
from kimonaudit.sinks import ssrf

if TYPE_CHECKING:
    from kimonaudit.destinations import Destinations
    from kimonaudit.service import AuditLog

DESTINATION_ALLOWLIST = Setting(
    "destination-allowlist",
    "KIMONAUDIT_DESTINATION_ALLOWLIST",
    "",
    "Comma-separated CIDRs that destinations may reach although they are not "
    "public (e.g. 127.0.0.0/8 for a receiver on loopback). Empty: only public addresses.",
)
DELIVERY_INTERVAL = Setting(
    "delivery-interval",
    "KIMONAUDIT_DELIVERY_INTERVAL",
    "0.5",
    "Seconds between the delivery loop's looks for new entries.",
)

DESTINATION_RESOLVE = Setting(
    "destination-resolve",
    "KIMONAUDIT_DESTINATION_RESOLVE",
    "dns",
    "How destination host names are resolved: dns (the system resolver), or hosts "
    "(only /etc/hosts and IP literals: no DNS query ever leaves the machine; for "
    "air-gapped deployments and the test suite).",
)

ALL: tuple[Setting, ...] = (DESTINATION_ALLOWLIST, DELIVERY_INTERVAL, DESTINATION_RESOLVE)


def resolver(mode: str | None = None) -> ssrf.Resolver:
    mode = DESTINATION_RESOLVE.get(mode)
    if mode == "hosts":
        return ssrf.hosts_resolver
    if mode == "dns":
        return ssrf.system_resolver
    raise ConfigError(f"{DESTINATION_RESOLVE.env} must be dns or hosts, not {mode!r}")


def destinations(log: AuditLog, allowlist: str | None = None) -> Destinations:
    """Destinations over `log` with the operator's allow-list and resolver
    (read here, at the edge)."""
    from kimonaudit.destinations import Destinations

    allow = ssrf.parse_allowlist(DESTINATION_ALLOWLIST.get(allowlist))
    return Destinations(log, allow, resolver())
