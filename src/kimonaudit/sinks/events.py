"""The one canonical event every format starts from.

Two kinds travel on a stream: ``audit.event`` (one ledger entry, as
`kimonaudit.views.entry_json` renders it, plus its tenant) and
``audit.checkpoint`` (a signed tree head, so the receiver holds an outside
copy of every checkpoint). The actor is the keyed hash only: a SIEM gets no
names or e-mail addresses from the directory.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kimonaudit.core.ipaddr import bytes_to_ip
from kimonaudit.core.records import EntryRow
from kimonaudit.core.timefmt import format_ts
from kimonaudit.results import SignedCheckpoint, b64
from kimonaudit.views import entry_json

EVENT = "audit.event"
CHECKPOINT = "audit.checkpoint"


@dataclass(frozen=True)
class StreamEvent:
    """`type` is EVENT or CHECKPOINT; `time_us` is recorded_at (an entry)
    or issued_at (a checkpoint); `seq` is the entry's seq, or for a
    checkpoint its tree size; `data` is the native JSON object."""

    type: str
    tenant_id: str
    seq: int
    time_us: int
    data: Mapping[str, Any]

    @property
    def is_checkpoint(self) -> bool:
        return self.type == CHECKPOINT


@functools.lru_cache(maxsize=65_536)
def _ip_text(ip: bytes) -> str:
    return bytes_to_ip(ip)


def from_entry(row: EntryRow) -> StreamEvent:
    # The address is rendered through a cache: ipaddress is slow, and a
    # helpdesk's traffic comes from few addresses.
    data = entry_json(row._replace(ip=None))
    data["ip"] = None if row.ip is None else _ip_text(row.ip)
    data["tenant_id"] = row.tenant_id
    return StreamEvent(EVENT, row.tenant_id, row.seq, row.recorded_at, data)


def from_checkpoint(cp: SignedCheckpoint) -> StreamEvent:
    data = {
        "tenant_id": cp.tenant_id,
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": b64(cp.root),
        "issued_at": format_ts(cp.issued_at),
        "note": cp.note,
    }
    return StreamEvent(CHECKPOINT, cp.tenant_id, cp.size, cp.issued_at, data)
