"""Operations: health and Prometheus metrics (no authentication; bind the
server to loopback or put it behind a proxy that keeps /metrics inside)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kimonaudit.api.deps import ApiError, api_state, responses
from kimonaudit.api.metrics import CONTENT_TYPE
from kimonaudit.api.models import HealthOut

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Health",
    description="200 when the database answers; 503 otherwise.",
    response_model=None,
    responses={200: {"model": HealthOut}, **responses()},
)
def healthz(request: Request) -> JSONResponse:
    try:
        # A primary-key lookup that finds nothing: proves the store answers.
        api_state(request).log.store.get_tenant("t_healthz")
    except Exception as exc:
        raise ApiError(503, f"the database does not answer: {type(exc).__name__}") from None
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"},
        **responses(),
    },
)
def metrics(request: Request) -> Response:
    return Response(api_state(request).metrics.registry.render(), media_type=CONTENT_TYPE)
