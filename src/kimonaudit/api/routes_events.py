"""POST /v1/events and GET /v1/events/{id}.

Appends run in the threadpool (AuditLog.append blocks until its group
commit), so concurrent requests overlap and share commits. Parsing and
validation run there too: a 1 MiB body takes milliseconds to decode, which
would stall every other request if done on the event loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kimonaudit.api.body import decode_events, read_body
from kimonaudit.api.deps import (
    SCOPE_READ,
    SCOPE_WRITE,
    ApiError,
    Principal,
    access_context,
    api_state,
    require,
    responses,
)
from kimonaudit.api.models import AppendOut, EventOut
from kimonaudit.core.events import Event
from kimonaudit.core.records import Receipt
from kimonaudit.results import SignedCheckpoint, b64
from kimonaudit.search import record_access
from kimonaudit.service import AuditLog
from kimonaudit.views import entry_json, receipts_json

if TYPE_CHECKING:
    from kimonaudit.api.app import ApiState

router = APIRouter(tags=["events"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {"$ref": "#/components/schemas/EventBatchIn"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "/v1/events",
    status_code=201,
    summary="Append events",
    description=(
        'One event object or `{"events": [...]}` (1 to 1,000), at most 1 MiB. All or '
        "nothing: if any event is invalid none is appended. Each receipt is returned after "
        "its entry is committed. An event whose `id` is already in the log returns its "
        "original receipt. With `?wait=checkpoint` the response waits until a checkpoint "
        "covers the entries and adds it with their inclusion proofs (503 on timeout; the "
        "events are appended all the same)."
    ),
    response_model=None,
    responses={
        201: {"model": AppendOut, "description": "Appended"},
        **responses(400, 401, 403, 409, 413, 415, 422, 429),
    },
    openapi_extra=_BODY,
)
async def append_events(
    request: Request,
    principal: Annotated[Principal, Depends(require(SCOPE_WRITE))],
    wait: Annotated[
        Literal["checkpoint"] | None,
        Query(description="`checkpoint`: answer once a checkpoint covers the entries."),
    ] = None,
) -> JSONResponse:
    st = api_state(request)
    raw = await read_body(request)
    tid = principal.tenant_id
    receipts = await run_in_threadpool(append_body, st, tid, raw)
    out: dict[str, Any] = {"receipts": receipts_json(receipts)}
    if wait == "checkpoint":
        need = max(r["seq"] for r in out["receipts"]) + 1
        try:
            cp = await st.checkpointer.wait_for(tid, need, st.settings.wait_timeout)
        except TimeoutError:
            raise ApiError(
                503,
                f"the events were appended, but no checkpoint covered them within "
                f"{st.settings.wait_timeout:g} s; fetch their proofs with GET /v1/events/{{id}}",
                headers={"Retry-After": "1"},
                extra={"receipts": out["receipts"]},
            ) from None
        out["checkpoint"] = cp.note
        out["tree_size"] = cp.size
        out["proofs"] = await run_in_threadpool(_proofs, st.log, tid, out["receipts"], cp)
    return JSONResponse(out, status_code=201)


def append_body(st: ApiState, tenant_id: str, raw: bytes) -> list[Receipt]:
    """Decode and append the events of a POST /v1/events body: their
    receipts, counted (`count_appended`). Blocks (decoding and the group
    commit): run it in a thread. The route and kimonaudit.api.fastingest
    both call it."""
    return append_decoded(st, tenant_id, decode_events(raw, st.settings.max_events))


def append_decoded(st: ApiState, tenant_id: str, events: list[Event]) -> list[Receipt]:
    """`append_body` for events already decoded. Blocks."""
    started = time.perf_counter()
    receipts = st.log.append_validated(tenant_id, events)
    count_appended(st, tenant_id, receipts, time.perf_counter() - started)
    return receipts


def count_appended(st: ApiState, tenant_id: str, receipts: list[Receipt], seconds: float) -> None:
    """Count committed receipts and tell the checkpointer."""
    st.metrics.append_seconds.observe(seconds)
    st.metrics.events_appended.inc(len(receipts))
    st.checkpointer.mark(tenant_id)


def _proofs(
    log: AuditLog, tenant_id: str, receipts: list[dict[str, Any]], cp: SignedCheckpoint
) -> list[dict[str, Any]]:
    out = []
    for r in receipts:
        p = log.prove_inclusion(tenant_id, r["seq"], cp.size)
        out.append({"seq": r["seq"], "tree_size": p.tree_size, "proof": [b64(h) for h in p.proof]})
    return out


@router.get(
    "/v1/events/{event_id}",
    summary="One entry with its inclusion proof",
    description=(
        "The entry with this id in the caller's tenant (404 otherwise) and its inclusion "
        "proof against the newest checkpoint (one is cut if none covers the entry yet), "
        "or against the checkpoint of `tree_size`."
    ),
    response_model=None,
    responses={200: {"model": EventOut}, **responses(401, 403, 404, 422, 429)},
)
def get_event(
    request: Request,
    event_id: Annotated[str, Path(min_length=1, max_length=200)],
    principal: Annotated[Principal, Depends(require(SCOPE_READ))],
    tree_size: Annotated[
        int | None, Query(ge=1, le=2**62, description="Prove against this checkpoint.")
    ] = None,
) -> JSONResponse:
    log = api_state(request).log
    tid = principal.tenant_id
    row = log.get_entry_by_id(tid, event_id)
    proof = log.prove_inclusion(tid, row.seq, tree_size)
    actor = log.resolve_actor(tid, row.actor_hash) if row.actor_hash else None
    redaction = log.redaction(tid, row.seq) if row.payload is None else None
    body = {"event": entry_json(row, actor, redaction), "inclusion": proof.to_json()}
    # Reading an entry is itself recorded (PCI DSS 10.2.1.3), after the read.
    record_access(log, tid, "audit_log.viewed", principal.actor, "", 1, "api",
                  context=access_context(request),
                  details={"event_id": row.event_id, "seq": row.seq})  # fmt: skip
    return JSONResponse(body)
