"""KimonAudit: a tamper-evident, multi-tenant audit log.

import kimonaudit
log = kimonaudit.open("sqlite:///audit.db")
tenant = log.create_tenant("acme", plan="business")
receipts = log.append(tenant.id, [{"action": "ticket.viewed", ...}])

Importing the package loads nothing of the server: `AuditLog` (and with it
the stores) is imported on first use, so `import kimonaudit.client` stays
light (see docs/client.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kimonaudit.errors import AuditLogError

if TYPE_CHECKING:
    from kimonaudit.service import AuditLog, Clock

__version__ = "0.1.0"


def open(
    url: str | None = None,
    *,
    clock: Clock | None = None,
    key_file: str | None = None,
    name: str | None = None,
    **store_options: object,
) -> AuditLog:
    """Open (creating if needed) the audit log at a database URL.

    `url` defaults to $KIMONAUDIT_DATABASE_URL or ``sqlite:///kimonaudit.db``;
    `key_file` to $KIMONAUDIT_SIGNING_KEY_FILE or ``kimonaudit.key`` (created
    with mode 0600 when absent). `clock` returns aware UTC datetimes; tests
    and the demo pass one to simulate history.
    """
    from kimonaudit import keys, settings
    from kimonaudit.service import AuditLog
    from kimonaudit.store import open_store

    ring = keys.load_or_create(
        settings.KEY_FILE.get(key_file), name=settings.DEPLOYMENT_NAME.get(name)
    )
    db_url = settings.DATABASE_URL.get(url)
    store_options.setdefault("indexer", settings.INDEXER.get())
    store = open_store(db_url, **store_options)
    return AuditLog(store, ring, clock=clock)


def __getattr__(name: str) -> Any:
    if name in ("AuditLog", "Clock"):
        from kimonaudit import service

        return getattr(service, name)
    raise AttributeError(f"module 'kimonaudit' has no attribute {name!r}")


__all__ = ["AuditLog", "AuditLogError", "open"]
