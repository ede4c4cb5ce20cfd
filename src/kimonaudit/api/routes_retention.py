"""Retention, legal hold, redaction and erasure for the caller's tenant
(admin scope; issue 8). Each change is itself an entry in the tenant's
log, with the calling key as the actor."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kimonaudit.api.deps import SCOPE_ADMIN, Principal, api_state, require, responses

router = APIRouter(tags=["retention and privacy"])

Admin = Annotated[Principal, Depends(require(SCOPE_ADMIN))]
_Reason = Annotated[str, Field(min_length=1, max_length=500)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanIn(_In):
    plan: Literal["free", "team", "business", "enterprise"]


class RetentionIn(_In):
    months: Annotated[int | None, Field(ge=12, le=1200)] = Field(
        description="Months to keep entries (at least 12); null: the plan's retention."
    )


class LegalHoldIn(_In):
    hold: bool
    reason: Annotated[str | None, Field(max_length=500)] = None


class RedactionIn(_In):
    seq: Annotated[int, Field(ge=0, le=2**62)]
    reason: _Reason


class ErasureIn(_In):
    actor_id: Annotated[str, Field(min_length=1, max_length=256)]


class RetentionOut(BaseModel):
    tenant_id: str
    plan: str
    plan_months: int
    custom_months: int | None
    retention_months: int
    legal_hold: bool


def _settings(request: Request, tenant_id: str) -> JSONResponse:
    return JSONResponse(api_state(request).log.retention_settings(tenant_id).to_json())


_OUT = {200: {"model": RetentionOut}}


@router.get(
    "/v1/retention",
    summary="Retention settings",
    description="The tenant's plan, retention in force and legal hold.",
    response_model=None,
    responses={**_OUT, **responses(401, 403, 429)},
)
def get_retention(request: Request, principal: Admin) -> JSONResponse:
    return _settings(request, principal.tenant_id)


@router.put(
    "/v1/retention/plan",
    summary="Change the plan",
    description=(
        "free and team keep 12 months, business and enterprise 36 (unless the tenant set "
        "its own retention). Appends `audit.retention.changed`."
    ),
    response_model=None,
    responses={**_OUT, **responses(400, 401, 403, 413, 415, 422, 429)},
)
def put_plan(request: Request, body: PlanIn, principal: Admin) -> JSONResponse:
    log = api_state(request).log
    log.set_plan(principal.tenant_id, body.plan, actor=principal.actor)
    return _settings(request, principal.tenant_id)


@router.put(
    "/v1/retention",
    summary="Set the tenant's own retention",
    description=(
        "`months` at least 12 (above the plan's length is allowed), or null for the plan's. "
        "Appends `audit.retention.changed`."
    ),
    response_model=None,
    responses={**_OUT, **responses(400, 401, 403, 413, 415, 422, 429)},
)
def put_retention(request: Request, body: RetentionIn, principal: Admin) -> JSONResponse:
    log = api_state(request).log
    log.set_retention(principal.tenant_id, body.months, actor=principal.actor)
    return _settings(request, principal.tenant_id)


@router.put(
    "/v1/retention/legal-hold",
    summary="Put on or lift a legal hold",
    description="While on, nothing is purged. Appends `audit.retention.changed`.",
    response_model=None,
    responses={**_OUT, **responses(400, 401, 403, 413, 415, 422, 429)},
)
def put_legal_hold(request: Request, body: LegalHoldIn, principal: Admin) -> JSONResponse:
    log = api_state(request).log
    log.set_legal_hold(principal.tenant_id, body.hold, reason=body.reason, actor=principal.actor)
    return _settings(request, principal.tenant_id)


@router.post(
    "/v1/redactions",
    summary="Redact one entry's payload",
    description=(
        "Deletes the payload and salt of entry `seq`, keeping its header, leaf and proofs, "
        "and the reason. Appends `audit_log.redacted`. `redacted` is false if it already was."
    ),
    response_model=None,
    responses={
        200: {"description": "Redacted"},
        **responses(400, 401, 403, 404, 413, 415, 422, 429),
    },
)
async def post_redaction(request: Request, body: RedactionIn, principal: Admin) -> JSONResponse:
    log = api_state(request).log
    done = await run_in_threadpool(
        lambda: log.redact(principal.tenant_id, body.seq, body.reason, actor=principal.actor)
    )
    return JSONResponse({"seq": body.seq, "redacted": done})


@router.post(
    "/v1/erasures",
    summary="Erase a person from the actor directory",
    description=(
        "GDPR Art. 17: destroys the actor's secret and directory rows, so nobody can tell "
        "which entries were theirs; the log still verifies. Appends `actor.erased`, which "
        "does not name the person. `found` is false if the directory did not know them."
    ),
    response_model=None,
    responses={200: {"description": "Erased"}, **responses(400, 401, 403, 413, 415, 422, 429)},
)
async def post_erasure(request: Request, body: ErasureIn, principal: Admin) -> JSONResponse:
    log = api_state(request).log
    found = await run_in_threadpool(
        lambda: log.erase_actor(principal.tenant_id, body.actor_id, actor=principal.actor)
    )
    return JSONResponse({"erased": True, "found": found})
