"""RFC 9457 problem details for every error, each with a stable machine-readable ``code``.

Every refusal is an ``engine.inputs.errors.Refusal`` (``ApiError`` is the HTTP layer's), and ONE
handler turns any of them into problem+json with its code's status from the code tables
(``engine.inputs.errors.status_of``); the HTTP layer's own codes are declared here (:data:`API_CODES`).

No stack traces or internal paths ever reach a client: unexpected exceptions become
``internal_error`` with the request id to quote, and are logged server-side.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

import jobs.intake.animation  # noqa: F401  (declares the intake's codes, all known before a first request)
from engine.inputs.errors import Refusal, declare_codes, status_of
from jobs.intake.acceptance import QueueUnavailable
from jobs.logs import request_id_var
from jobs.storage import StorageUnavailable

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://poseanimate.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal error",
    503: "Service unavailable",
}


API_CODES = declare_codes(
    {
        "bad_request": 400,
        "malformed_json": 400,
        "malformed_multipart": 400,
        "unauthorized": 401,
        "link_invalid": 403,
        "not_found": 404,
        "method_not_allowed": 405,
        "job_already_finished": 409,
        "idempotency_in_progress": 409,
        "body_too_large": 413,
        "headers_too_large": 431,
        "unsupported_media_type": 415,
        "validation_error": 422,
        "idempotency_key_reused": 422,
        "rate_limited": 429,
        "quota_exceeded": 429,
        "too_many_streams": 429,
        "internal_error": 500,
        "service_unavailable": 503,
        "storage_unavailable": 503,
        "queue_unavailable": 503,
        "not_ready": 503,
        "extraction_lost": 503,
    },
    owner="api.errors",
)
"""The HTTP layer's codes (the job core's and the engine's are declared next to their refusals)."""


class ApiError(Refusal):
    """A refusal of the HTTP layer: a stable code (its status is the code's), a client-safe detail,
    and optionally headers (``Retry-After``, ``WWW-Authenticate``), field errors and a title."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail or code, code=code)
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors
        self.title = title


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def problem_response(
    code: str,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    title: str | None = None,
    instance: str | None = None,
    status: int | None = None,
) -> JSONResponse:
    """The problem+json reply of ``code``, with the code's status (``status`` only for an HTTP
    error the framework raised, whose status is given)."""
    status = status or status_of(code)
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


Reshape = Callable[[dict[str, Any], int], tuple[dict[str, Any], int, dict[str, str]]]
"""(problem, status) -> (body, status, extra headers): another API's error shape of a problem."""


def reshaped(response: Response, reshape: Reshape) -> Response:
    """A problem+json reply in another error shape (the OpenAI facade's, ``api.openai_compat``), its
    headers (Retry-After, WWW-Authenticate) kept; any other reply unchanged."""
    try:
        problem = json.loads(bytes(response.body))
    except ValueError:
        return response
    if not isinstance(problem, dict) or "code" not in problem:
        return response
    body, status, extra = reshape(problem, response.status_code)
    drop = ("content-length", "content-type")
    headers = {k: v for k, v in response.headers.items() if k.lower() not in drop}
    return JSONResponse(body, status_code=status, headers={**headers, **extra})


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    """Pydantic errors without the echoed input (it may be huge or secret)."""
    out = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out[:50]


def validate_body(model: type[M], fields: dict[str, Any]) -> M:
    """``model.model_validate(fields)``, or the 422 ``validation_error`` problem (without the input)."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise ApiError(
            "validation_error",
            "the request does not match the schema",
            errors=_clean_errors(exc.errors()),
        ) from exc


def install_error_handlers(app: FastAPI) -> None:
    async def refusal(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refusal)
        if isinstance(exc, ApiError):
            return problem_response(
                exc.code,
                exc.detail,
                headers=exc.headers,
                errors=exc.errors,
                title=exc.title,
                instance=request.url.path,
            )
        return problem_response(exc.code, exc.message, instance=request.url.path)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            "validation_error",
            "the request does not match the schema",
            errors=_clean_errors(exc.errors()),
            instance=request.url.path,
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 400: "bad_request"}.get(
            exc.status_code, f"http_{exc.status_code}"
        )
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
        return problem_response(code, detail, headers=dict(exc.headers or {}), status=exc.status_code)

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable", extra={"error": type(exc).__name__})
        return problem_response(
            "service_unavailable", "the job store is unavailable; retry", headers=retry_after(5)
        )

    async def storage_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("storage unavailable", extra={"error": str(exc)})
        return problem_response(
            "storage_unavailable", "object storage is unavailable; retry", headers=retry_after(5)
        )

    async def queue_down(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            "queue_unavailable", "the job queue is unavailable; retry", headers=retry_after(5)
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return problem_response("internal_error", "unexpected error; quote the request_id when reporting it")

    app.add_exception_handler(Refusal, refusal)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(redis.exceptions.ConnectionError, redis_down)
    app.add_exception_handler(redis.exceptions.TimeoutError, redis_down)
    app.add_exception_handler(StorageUnavailable, storage_down)
    app.add_exception_handler(QueueUnavailable, queue_down)
    app.add_exception_handler(Exception, unexpected)
