"""SIEM destinations of the caller's tenant (admin scope).

Creating, changing, pausing, resuming, rotating a secret of and deleting
a destination are entries in the tenant's log (``audit_stream.*``) with the
calling key as the actor. Secrets go in once and never come out, except a
secret generated here (the webhook signing secret), returned once.

`install` adds the delivery job to the server's background jobs and the
per-destination gauges to /metrics.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from kimonaudit.api.body import parse_json, read_body
from kimonaudit.api.deps import SCOPE_ADMIN, Principal, api_state, require, responses
from kimonaudit.api.errors import error_response, validation_fields
from kimonaudit.destinations import Destinations
from kimonaudit.sinks import settings as sink_settings

router = APIRouter(tags=["destinations"])

_ID = Path(min_length=1, max_length=64, description="The destination id (dst_…).")


class DestinationCreate(BaseModel):
    """A new destination. See docs/streaming.md for each kind's settings
    and secrets."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["webhook", "splunk_hec", "syslog", "datadog", "s3"]
    format: Literal["json", "ocsf", "cef"] | None = None
    url: str | None = Field(None, max_length=2000)
    filter: str = Field("", max_length=2000, description="A search query, e.g. is:security.")
    batch: dict[str, int] | None = Field(
        None, description="Batching limits: max_events, max_bytes, max_wait_ms."
    )
    settings: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    start: Literal["now", "beginning"] | int = Field(
        "now", description='"now" (the default), "beginning", or a seq to start at.'
    )


class DestinationUpdate(BaseModel):
    """A change to a destination: only the fields given change. `batch`
    merges into the batching limits; `settings` and `secrets` merge key by
    key, null removing a key. The kind and the cursor never change."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=200)
    format: Literal["json", "ocsf", "cef"] | None = None
    url: str | None = Field(None, max_length=2000, description="Checked by the SSRF guard again.")
    filter: str | None = Field(
        None, max_length=2000, description='A search query; "" delivers everything.'
    )
    batch: dict[str, int] | None = Field(
        None, description="Batching limits to change: max_events, max_bytes, max_wait_ms."
    )
    settings: dict[str, Any] | None = Field(
        None, description="Settings to set (null removes one), e.g. TLS: ca_pem, server_name."
    )
    secrets: dict[str, str | None] | None = Field(
        None, description="Secrets to replace (null removes an optional one); never returned."
    )
    new_signing_secret: bool = Field(
        False,
        description="Webhooks: replace every signing secret with a generated one, "
        "returned in `secrets` this once (rotate-secret keeps the old one for a while).",
    )


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("paused by an administrator", max_length=500)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: int = Field(86_400, ge=0, le=2_592_000)


class DestinationOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    kind: str
    format: str
    url: str
    filter: str
    batch: dict[str, int]
    settings: dict[str, Any]
    state: str
    state_reason: str | None
    created_at: str
    updated_at: str
    health: dict[str, Any]


class DestinationCreatedOut(DestinationOut):
    secrets: dict[str, str] = Field(description="Secrets generated here, shown this once.")


class DestinationUpdatedOut(DestinationOut):
    changed: list[str] = Field(description="The fields that changed (secrets by name only).")
    secrets: dict[str, str] = Field(description="Secrets generated here, shown this once.")


class DestinationListOut(BaseModel):
    destinations: list[DestinationOut]


class TestOut(BaseModel):
    ok: bool
    error: str


class SecretOut(BaseModel):
    signing_secret: str


def destinations_of(request: Request) -> Destinations:
    dests: Destinations | None = getattr(request.app.state, "destinations", None)
    if dests is None:
        dests = sink_settings.destinations(api_state(request).log)
        request.app.state.destinations = dests
    return dests


async def _body(request: Request, model: type[BaseModel], empty_ok: bool = False) -> Any:
    if empty_ok and "content-type" not in request.headers and not await request.body():
        return model()  # an optional body left out
    raw = await read_body(request)
    data: Any = parse_json(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = validation_fields(exc.errors(), body=True)
        first = fields[0]
        return error_response(422, "invalid_input", f"{first['path']}: {first['message']}", fields)


Admin = Annotated[Principal, Depends(require(SCOPE_ADMIN))]


def _body_schema(model: type[BaseModel], required: bool = False) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post(
    "/v1/destinations",
    status_code=201,
    summary="Create a destination",
    description=(
        "Adds a SIEM destination. Secrets are sealed at once; a generated webhook "
        "signing secret is returned in `secrets` this once."
    ),
    response_model=None,
    responses={
        201: {"model": DestinationCreatedOut, "description": "Created"},
        **responses(400, 401, 403, 413, 415, 422, 429),
    },
    openapi_extra=_body_schema(DestinationCreate, required=True),
)
async def create_destination(request: Request, principal: Admin) -> JSONResponse:
    body = await _body(request, DestinationCreate)
    if isinstance(body, JSONResponse):
        return body
    dests = destinations_of(request)
    dest, generated = await run_in_threadpool(
        lambda: dests.create(
            principal.tenant_id,
            name=body.name,
            kind=body.kind,
            format=body.format,
            url=body.url,
            settings=body.settings,
            secrets=body.secrets,
            batch=body.batch,
            filter=body.filter,
            start=body.start,
            actor=principal.actor,
        )
    )
    return JSONResponse({**dest.to_json(), "secrets": generated}, status_code=201)


@router.get(
    "/v1/destinations",
    summary="List destinations",
    description="The tenant's destinations with their health (never their secrets).",
    response_model=None,
    responses={200: {"model": DestinationListOut}, **responses(401, 403, 429)},
)
def list_destinations(request: Request, principal: Admin) -> JSONResponse:
    found = destinations_of(request).list(principal.tenant_id)
    return JSONResponse({"destinations": [d.to_json() for d in found]})


@router.get(
    "/v1/destinations/{destination_id}",
    summary="Show a destination",
    description="Settings and health: last success, last error, lag, delivered counts.",
    response_model=None,
    responses={200: {"model": DestinationOut}, **responses(401, 403, 404, 429)},
)
def get_destination(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    return JSONResponse(destinations_of(request).get(principal.tenant_id, destination_id).to_json())


@router.patch(
    "/v1/destinations/{destination_id}",
    summary="Change a destination",
    description=(
        "Changes name, format, filter, batching limits, URL (checked by the SSRF guard "
        "again), settings (TLS included) or secrets. Applies from the next batch; a batch "
        "saved for retry is sent as it was formed. Appends `audit_stream.updated` naming "
        "the changed fields (never a secret's value); nothing changed, nothing appended."
    ),
    response_model=None,
    responses={
        200: {"model": DestinationUpdatedOut, "description": "Changed (or unchanged)"},
        **responses(400, 401, 403, 404, 413, 415, 422, 429),
    },
    openapi_extra=_body_schema(DestinationUpdate, required=True),
)
async def update_destination(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    body = await _body(request, DestinationUpdate)
    if isinstance(body, JSONResponse):
        return body
    dests = destinations_of(request)
    dest, changed, generated = await run_in_threadpool(
        lambda: dests.update(
            principal.tenant_id,
            destination_id,
            name=body.name,
            format=body.format,
            url=body.url,
            filter=body.filter,
            batch=body.batch,
            settings=body.settings,
            secrets=body.secrets,
            new_signing_secret=body.new_signing_secret,
            actor=principal.actor,
        )
    )
    return JSONResponse({**dest.to_json(), "changed": changed, "secrets": generated})


@router.post(
    "/v1/destinations/{destination_id}/pause",
    summary="Pause a destination",
    description="Stops delivery; entries keep queuing behind the cursor. Body optional.",
    response_model=None,
    responses={200: {"model": DestinationOut}, **responses(400, 401, 403, 404, 422, 429)},
    openapi_extra=_body_schema(PauseIn),
)
async def pause_destination(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    body = await _body(request, PauseIn, empty_ok=True)
    if isinstance(body, JSONResponse):
        return body
    dests = destinations_of(request)
    dest = await run_in_threadpool(
        dests.pause, principal.tenant_id, destination_id, body.reason, principal.actor
    )
    return JSONResponse(dest.to_json())


@router.post(
    "/v1/destinations/{destination_id}/resume",
    summary="Resume a destination",
    description="Active again (after a pause, persistent failure or 410); catches up in order.",
    response_model=None,
    responses={200: {"model": DestinationOut}, **responses(401, 403, 404, 429)},
)
def resume_destination(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    dest = destinations_of(request).resume(principal.tenant_id, destination_id, principal.actor)
    return JSONResponse(dest.to_json())


@router.post(
    "/v1/destinations/{destination_id}/test",
    summary="Send a test delivery",
    description="Sends the newest signed checkpoint once; moves no cursor.",
    response_model=None,
    responses={200: {"model": TestOut}, **responses(401, 403, 404, 429)},
)
def test_destination(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    from kimonaudit.sinks.job import send_test

    outcome = send_test(destinations_of(request), principal.tenant_id, destination_id)
    return JSONResponse({"ok": outcome.ok, "error": outcome.error})


@router.post(
    "/v1/destinations/{destination_id}/rotate-secret",
    summary="Rotate a webhook signing secret",
    description=(
        "Returns a new signing secret once; the previous one keeps signing beside it "
        "for `overlap_seconds` (default one day)."
    ),
    response_model=None,
    responses={200: {"model": SecretOut}, **responses(400, 401, 403, 404, 422, 429)},
    openapi_extra=_body_schema(RotateIn),
)
async def rotate_secret(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    body = await _body(request, RotateIn, empty_ok=True)
    if isinstance(body, JSONResponse):
        return body
    dests = destinations_of(request)
    secret = await run_in_threadpool(
        dests.rotate_secret,
        principal.tenant_id,
        destination_id,
        body.overlap_seconds,
        principal.actor,
    )
    return JSONResponse({"signing_secret": secret})


@router.delete(
    "/v1/destinations/{destination_id}",
    summary="Delete a destination",
    description="Stops and removes it with its delivery state.",
    response_model=None,
    responses={200: {"model": TestOut}, **responses(401, 403, 404, 429)},
)
def delete_destination(
    request: Request, destination_id: Annotated[str, _ID], principal: Admin
) -> JSONResponse:
    destinations_of(request).delete(principal.tenant_id, destination_id, principal.actor)
    return JSONResponse({"ok": True, "error": ""})


def install(app: FastAPI) -> None:
    """The delivery job (when the server runs jobs) and the gauges."""
    from kimonaudit.sinks.delivery import Deliverer
    from kimonaudit.sinks.job import DeliveryJob, DestinationMetrics

    st = app.state.api
    dests = app.state.destinations = sink_settings.destinations(st.log)
    st.metrics.collector(DestinationMetrics(dests))
    if st.settings.run_jobs:
        interval = float(sink_settings.DELIVERY_INTERVAL.get())
        st.jobs.append(DeliveryJob(Deliverer(dests), interval))
