"""The streaming's settings, declared once (see kimonaudit.settings)."""

from __future__ import annotations

from kimonaudit.settings import Setting

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

ALL: tuple[Setting, ...] = (DESTINATION_ALLOWLIST, DELIVERY_INTERVAL)
