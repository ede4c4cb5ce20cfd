"""Pydantic models of the HTTP boundary: request bodies (extra="forbid", so
a typo is an error, not a silently dropped field) and the documented shape
of responses.

Events are described here for /openapi.json but validated by
kimonaudit.core.events, which also enforces what a schema cannot say (an
event's severity may be raised but never lowered, JSON numbers stay within
±(2**53-1), nesting stays within 16 levels) and names the bad field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kimonaudit.apikeys import MAX_NAME_LENGTH
from kimonaudit.core.catalogue import MAX_ACTION_LENGTH
from kimonaudit.core.events import MAX_BATCH_EVENTS, MAX_CHANGES, MAX_TEXT_LENGTH, OUTCOMES

# 1-200 characters without C0/C1 controls, as kimonaudit.core.events._text.
Text = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$"),
]
OptionalText = Annotated[
    str | None,
    Field(max_length=MAX_TEXT_LENGTH, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"),
]
Scope = Literal["events:write", "events:read", "admin"]
Severity = Literal["info", "low", "medium", "high", "critical"]
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]
Timestamp = Annotated[
    str,
    Field(
        description="RFC 3339 with an offset, e.g. 2026-11-26T10:00:00Z",
        json_schema_extra={"format": "date-time"},
    ),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActorIn(_In):
    id: Text = Field(description="Your stable id of the actor; stored only as a keyed hash.")
    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")] | None = "user"
    name: OptionalText = Field(None, description="Display name; kept in the directory only.")
    email: OptionalText = Field(None, description="Email; kept in the directory only.")


class TargetIn(_In):
    type: Text
    id: Text


class ContextIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    ip: str | None = Field(None, description="IPv4 or IPv6 address of the actor.")
    user_agent: str | None = None
    request_id: str | None = None


class ChangeIn(_In):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    field: Text
    from_: Any = Field(None, alias="from")
    to: Any = None


class EventIn(_In):
    """One audit event, as a helpdesk sends it (docs/events.md)."""

    id: Text | None = Field(None, description="Client id (e.g. a UUID) for idempotent retries.")
    action: Annotated[
        str,
        Field(max_length=MAX_ACTION_LENGTH, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$"),
    ] = Field(description='Dot-separated action, e.g. "ticket.viewed".')
    actor: ActorIn | None = None
    target: TargetIn | None = None
    context: ContextIn | None = None
    changes: Annotated[list[ChangeIn], Field(max_length=MAX_CHANGES)] | None = None
    outcome: Outcome | None = "success"
    occurred_at: Timestamp | None = Field(None, description="Client time; never used for order.")
    metadata: dict[str, Any] | None = None
    severity: Severity | None = Field(None, description="May raise the action's default only.")


class EventBatchIn(_In):
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


class ApiKeyCreate(_In):
    name: Annotated[
        str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    ]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=3)]


# -- responses -------------------------------------------------------------
class Receipt(BaseModel):
    id: str
    seq: int
    recorded_at: str
    leaf_hash: str = Field(description="base64 SHA-256 leaf hash (RFC 6962)")


class LeafProof(BaseModel):
    seq: int
    tree_size: int
    proof: list[str]


class AppendOut(BaseModel):
    receipts: list[Receipt]
    checkpoint: str | None = Field(None, description="With ?wait=checkpoint: the signed note.")
    tree_size: int | None = Field(None, description="With ?wait=checkpoint: its tree size.")
    proofs: list[LeafProof] | None = Field(None, description="With ?wait=checkpoint.")


class ActorOut(BaseModel):
    hash: str
    type: str | None
    id: str | None = None
    name: str | None = None
    email: str | None = None
    erased: bool | None = None


class TargetOut(BaseModel):
    type: str
    id: str | None


class RedactionOut(BaseModel):
    """Why and when a redacted entry's payload was deleted; each null if the
    redaction predates kept reasons."""

    reason: str | None
    redacted_at: str | None


class EntryOut(BaseModel):
    id: str
    seq: int
    recorded_at: str
    occurred_at: str | None
    action: str
    category: str
    severity: Severity
    security: bool
    actor: ActorOut | None
    target: TargetOut | None
    outcome: str
    ip: str | None
    context: dict[str, Any]
    changes: list[dict[str, Any]]
    metadata: dict[str, Any]
    redacted: bool
    redaction: RedactionOut | None = Field(
        description="Null unless `redacted`: the reason given and when (docs/retention.md)."
    )
    leaf_hash: str


class InclusionOut(BaseModel):
    index: int
    tree_size: int
    leaf: str
    leaf_hash: str
    root: str
    proof: list[str]
    checkpoint: str


class EventOut(BaseModel):
    event: EntryOut
    inclusion: InclusionOut


class CheckpointOut(BaseModel):
    tenant_id: str
    origin: str
    tree_size: int
    root: str
    issued_at: str
    note: str = Field(description="The C2SP signed note, exactly as issued.")


class ConsistencyOut(BaseModel):
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]
    checkpoint: str | None = Field(description="The signed checkpoint of new_size, if one exists.")


class VerifierKeysOut(BaseModel):
    name: str
    active: str
    keys: list[str] = Field(description="Signed-note verifier keys, active first.")


class ApiKeyOut(BaseModel):
    id: str
    prefix: str
    tenant_id: str
    name: str
    scopes: list[Scope]
    created_at: str
    revoked_at: str | None
    last_used_at: str | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The API key. Shown once: only its hash is stored.")


class ApiKeyListOut(BaseModel):
    api_keys: list[ApiKeyOut]


class HealthOut(BaseModel):
    status: Literal["ok"]
