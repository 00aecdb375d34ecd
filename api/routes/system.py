"""Health, readiness and metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ServicesDep
from api.errors import problem_response

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the process serves requests")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis and storage are reachable",
    responses={503: {"description": "A dependency is down", "content": {"application/problem+json": {}}}},
)
def readyz(services: ServicesDep) -> Any:
    checks: dict[str, str] = {}
    try:
        services.store.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        services.storage.check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"unavailable: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        response = problem_response("not_ready", ", ".join(f"{k}: {v}" for k, v in checks.items()))
        response.headers["Retry-After"] = "5"
        return response
    return {"status": "ready", "checks": checks}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
