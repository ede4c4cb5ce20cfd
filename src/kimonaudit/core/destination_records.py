"""What the SIEM streaming keeps: destinations and their delivery state.

Plain frozen values below the stores that keep them. Field order is the
column order of the `destinations` and `destination_delivery` tables.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS: tuple[str, ...] = ("webhook", "splunk_hec", "syslog", "datadog", "s3")
FORMATS: tuple[str, ...] = ("json", "ocsf", "cef")
# Which formats each kind can carry.
KIND_FORMATS: dict[str, tuple[str, ...]] = {
    "webhook": ("json", "ocsf"),
    "splunk_hec": ("json", "ocsf", "cef"),
    "syslog": ("cef", "json", "ocsf"),
    "datadog": ("json", "ocsf", "cef"),
    "s3": ("json", "ocsf"),
}
STATES: tuple[str, ...] = ("active", "paused", "disabled")


@dataclass(frozen=True)
class DestinationRecord:
    """A tenant's destination. `config` is JSON of the non-secret settings;
    `sealed` the secrets, encrypted under the deployment key. `state` is
    active, paused (by a person, or by persistent failure) or disabled
    (the receiver answered 410 Gone); `state_reason` says why."""

    tenant_id: str
    destination_id: str
    name: str
    kind: str
    format: str
    config: str
    sealed: bytes
    state: str
    state_reason: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class DeliveryState:
    """Where a destination's delivery stands.

    Every entry with seq < `next_seq` has been delivered (or did not match
    the filter) and every checkpoint with tree size <= `cp_size`.
    `inflight` is JSON of the batch being attempted (its seq range,
    checkpoints and message id), kept until it succeeds so that a retry
    after a crash sends the very same batch under the same id. `lease_*`
    names the process delivering this destination now.
    """

    tenant_id: str
    destination_id: str
    next_seq: int = 0
    cp_size: int = 0
    inflight: str | None = None
    attempts: int = 0
    next_attempt_at: int = 0
    lease_owner: str | None = None
    lease_until: int = 0
    last_success_at: int | None = None
    last_error_at: int | None = None
    last_error: str | None = None
    delivered_events: int = 0
    delivered_checkpoints: int = 0
    delivered_batches: int = 0
    failed_attempts: int = 0
    last_delivered_at: int | None = None  # recorded_at of the newest delivered entry


DELIVERY_COLUMNS: tuple[str, ...] = tuple(DeliveryState.__dataclass_fields__)
DESTINATION_COLUMNS: tuple[str, ...] = tuple(DestinationRecord.__dataclass_fields__)
