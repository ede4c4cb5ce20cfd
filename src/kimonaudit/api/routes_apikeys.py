"""API keys of the caller's tenant (admin scope). Creating and revoking a
key are themselves entries in the tenant's log (auth.api_token.*), with
the calling key as the actor."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from kimonaudit.api.body import parse_json, read_body
from kimonaudit.api.deps import SCOPE_ADMIN, Principal, api_state, require, responses
from kimonaudit.api.errors import error_response, validation_fields
from kimonaudit.api.models import ApiKeyCreate, ApiKeyCreatedOut, ApiKeyListOut, ApiKeyOut

router = APIRouter(tags=["api keys"])

_KEY_ID = Path(min_length=1, max_length=64, description="The key id (12 characters).")


@router.post(
    "/v1/api-keys",
    status_code=201,
    summary="Create an API key",
    description=(
        "Creates a key for the caller's tenant. The response holds the key text once; "
        "only a hash of its secret is stored."
    ),
    response_model=None,
    responses={
        201: {"model": ApiKeyCreatedOut, "description": "Created"},
        **responses(400, 401, 403, 413, 415, 422, 429),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ApiKeyCreate"}}
            },
        }
    },
)
async def create_key(
    request: Request, principal: Annotated[Principal, Depends(require(SCOPE_ADMIN))]
) -> JSONResponse:
    st = api_state(request)
    data: Any = parse_json(await read_body(request))
    try:
        body = ApiKeyCreate.model_validate(data)
    except ValidationError as exc:
        fields = validation_fields(exc.errors(), body=True)
        first = fields[0]
        return error_response(422, "invalid_input", f"{first['path']}: {first['message']}", fields)
    rec, text = await run_in_threadpool(
        st.log.create_api_key,
        principal.tenant_id,
        body.name,
        body.scopes,
        actor=principal.actor,
    )
    return JSONResponse({**rec.to_json(), "key": text}, status_code=201)


@router.get(
    "/v1/api-keys",
    summary="List API keys",
    description="The tenant's keys, revoked ones included (never their secrets).",
    response_model=None,
    responses={200: {"model": ApiKeyListOut}, **responses(401, 403, 429)},
)
def list_keys(
    request: Request, principal: Annotated[Principal, Depends(require(SCOPE_ADMIN))]
) -> JSONResponse:
    keys = api_state(request).log.list_api_keys(principal.tenant_id)
    return JSONResponse({"api_keys": [k.to_json() for k in keys]})


@router.delete(
    "/v1/api-keys/{key_id}",
    summary="Revoke an API key",
    description="Revokes the key at once (idempotent); 404 if it is not the tenant's.",
    response_model=None,
    responses={200: {"model": ApiKeyOut}, **responses(401, 403, 404, 422, 429)},
)
def revoke_key(
    request: Request,
    key_id: Annotated[str, _KEY_ID],
    principal: Annotated[Principal, Depends(require(SCOPE_ADMIN))],
) -> JSONResponse:
    st = api_state(request)
    rec = st.log.revoke_api_key(principal.tenant_id, key_id, actor=principal.actor)
    st.auth.forget(rec.key_id)
    return JSONResponse(rec.to_json())
