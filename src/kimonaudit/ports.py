"""What search and export need from the log: the shape of the
`AuditLog` facade they are handed, as a Protocol.

`kimonaudit.service` imports `kimonaudit.search` and `kimonaudit.export`
to offer `AuditLog.search`, `.histogram` and `.export`; they, in turn, only
know this Protocol, so no import (not even a type-checking one) runs from
them back up to the service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from kimonaudit.core.records import ActorRecord, Receipt
from kimonaudit.results import Tenant
from kimonaudit.store.base import Store


class LogPort(Protocol):
    """The parts of `kimonaudit.service.AuditLog` that search, histograms,
    exports and access records use."""

    store: Store

    def now_us(self) -> int: ...

    def get_tenant(self, tenant_id: str) -> Tenant: ...

    def actor_hash(self, tenant_id: str, actor_id: str) -> str: ...

    def resolve_actor(self, tenant_id: str, a_hash: str) -> ActorRecord | None: ...

    def redaction(self, tenant_id: str, seq: int) -> tuple[str, int] | None: ...

    def sign_token(self, purpose: str, data: bytes) -> bytes: ...

    def append(self, tenant_id: str, events: Sequence[Mapping[str, Any]]) -> list[Receipt]: ...
