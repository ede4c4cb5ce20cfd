"""Checkpoints, consistency proofs and the verifier keys.

Every route is scoped to the caller's tenant: a tree size that exists only
in another tenant's log is simply not found here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from kimonaudit.api.deps import SCOPE_READ, Principal, api_state, require, responses
from kimonaudit.api.models import CheckpointOut, ConsistencyOut, VerifierKeysOut
from kimonaudit.errors import InvalidInput, NotFound

router = APIRouter(tags=["proofs"])

_SIZE = 2**62


@router.get(
    "/v1/checkpoints/latest",
    summary="The newest signed checkpoint",
    description="The newest checkpoint of the caller's tenant; one is cut if none exists yet.",
    response_model=None,
    responses={200: {"model": CheckpointOut}, **responses(401, 403, 429)},
)
def latest_checkpoint(
    request: Request, principal: Annotated[Principal, Depends(require(SCOPE_READ))]
) -> JSONResponse:
    log = api_state(request).log
    cp = log.latest_checkpoint(principal.tenant_id) or log.checkpoint(principal.tenant_id)
    return JSONResponse(cp.to_json())


@router.get(
    "/v1/checkpoints/{tree_size}",
    summary="The checkpoint of one tree size",
    response_model=None,
    responses={200: {"model": CheckpointOut}, **responses(401, 403, 404, 422, 429)},
)
def checkpoint_at(
    request: Request,
    tree_size: Annotated[int, Path(ge=0, le=_SIZE)],
    principal: Annotated[Principal, Depends(require(SCOPE_READ))],
) -> JSONResponse:
    cp = api_state(request).log.get_checkpoint(principal.tenant_id, tree_size)
    return JSONResponse(cp.to_json())


@router.get(
    "/v1/proofs/consistency",
    summary="Consistency proof between two tree sizes",
    description=(
        "Proves that the tree of size `to` extends the tree of size `from` (RFC 9162 2.1.4). "
        "`to` defaults to the newest checkpoint. 404 if the caller's tree has fewer than "
        "`to` entries. From size 0 the proof is empty by definition. After a retention "
        "purge, a size inside the purged prefix is served only if a checkpoint was signed "
        "at it (422 otherwise): the purge keeps the hashes those proofs need."
    ),
    response_model=None,
    responses={200: {"model": ConsistencyOut}, **responses(401, 403, 404, 422, 429)},
)
def consistency(
    request: Request,
    principal: Annotated[Principal, Depends(require(SCOPE_READ))],
    old: Annotated[int, Query(alias="from", ge=0, le=_SIZE)],
    new: Annotated[int | None, Query(alias="to", ge=0, le=_SIZE)] = None,
) -> JSONResponse:
    log = api_state(request).log
    tid = principal.tenant_id
    if new is None:
        cp = log.latest_checkpoint(tid) or log.checkpoint(tid)
        new = cp.size
    size = log.store.tree_state(tid).size
    for name, value in (("from", old), ("to", new)):
        if value > size:
            raise NotFound(f"no tree of size {value} ({name}): the log has {size} entries")
    if old > new:
        raise InvalidInput(f"must not exceed to ({new})", field="from")
    proof = log.prove_consistency(tid, old, new)
    try:
        note: str | None = log.get_checkpoint(tid, new).note
    except NotFound:
        note = None
    return JSONResponse({**proof.to_json(), "checkpoint": note})


@router.get(
    "/v1/keys",
    summary="Verifier keys",
    description=(
        "The deployment's signed-note verifier keys (active first, then retired), for "
        "checking checkpoints offline. No authentication."
    ),
    response_model=None,
    responses={200: {"model": VerifierKeysOut}},
)
def verifier_keys(request: Request) -> JSONResponse:
    ring = api_state(request).log.keys
    keys = ring.verifier_keys()
    return JSONResponse({"name": ring.name, "active": keys[0], "keys": keys})
