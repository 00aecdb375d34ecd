"""OpenAI's error shape on ``/v1``: the same refusals as everywhere else, worded as OpenAI words them.

Every error handler of the app (``api.errors``) still decides the status and our stable ``code``; on a
``/v1`` path its problem+json reply is rewritten into ``{"error": {"message", "type", "param",
"code"}}`` with a status the official SDK maps to the right exception class (422/413/415 -> 400:
``BadRequestError``). Elsewhere nothing changes. So there is one refusal path, and a new refusal
class gets both shapes for free.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import Response

PREFIX = "/v1"

# Our statuses -> what OpenAI answers (the SDK raises BadRequestError for 400 only).
_STATUS = {413: 400, 415: 400, 422: 400}
_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}
# Which request field a refusal is about, when the problem does not say (its code's prefix).
_PARAM_PREFIXES = (
    ("image_", "input_reference"),
    ("pose", "poses"),
    ("source_pose", "source_pose"),
    ("mask", "mask"),
    ("video_", "driving_video"),
    ("prompt", "prompt"),
    ("subject", "subject_words"),
    ("webhook", "webhook_url"),
    ("model", "model"),
    ("size", "size"),
    ("seconds", "seconds"),
)
# Conflicts that a retry cannot clear: the SDK retries 409s unless told not to.
_RETRYABLE_409 = {"idempotency_in_progress"}


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """An error on ``/v1``: ``code`` is our stable code (the same as problem+json's elsewhere)."""

    error: OpenAIErrorBody


def openai_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries of the ``/v1`` routes: each status answers an ``OpenAIError``."""
    return {s: {"model": OpenAIError, "description": "OpenAI-shaped error"} for s in statuses}


def is_v1(request: Request) -> bool:
    path = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


def _param(problem: dict[str, Any]) -> str | None:
    errors = problem.get("errors") or []
    if errors:
        loc = [part for part in errors[0].get("loc", []) if part not in ("body", "query", "path")]
        if loc:
            return {"image": "input_reference"}.get(str(loc[0]), str(loc[0]))
    code = str(problem.get("code", ""))
    if code == "parameter_out_of_range":  # "steps must be an integer in 1..100, got 500"
        return str(problem.get("detail", "")).split(" ", 1)[0] or None
    return next((param for prefix, param in _PARAM_PREFIXES if code.startswith(prefix)), None)


def openai_error(response: Response) -> Response:
    """A problem+json reply rewritten in OpenAI's shape (headers such as Retry-After kept)."""
    try:
        problem = json.loads(bytes(response.body))
    except ValueError:
        return response
    if not isinstance(problem, dict) or "code" not in problem:
        return response
    status = _STATUS.get(response.status_code, response.status_code)
    message = problem.get("detail") or problem.get("title") or problem["code"]
    errors = problem.get("errors")
    if errors and problem["code"] == "validation_error":
        first = errors[0]
        message = f"{message}: {'.'.join(first.get('loc', []))}: {first.get('msg', '')}"
    body = {
        "error": {
            "message": message,
            "type": _TYPE.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": _param(problem),
            "code": problem["code"],
        }
    }
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
    }
    if problem.get("request_id"):
        headers["x-request-id"] = str(problem["request_id"])
    if status == 409 and problem["code"] not in _RETRYABLE_409:
        headers["x-should-retry"] = "false"
    return JSONResponse(body, status_code=status, headers=headers)


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _scoped(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        return openai_error(response) if is_v1(request) else response

    return handle


def install_openai_errors(app: FastAPI) -> None:
    """Wrap every installed error handler: on ``/v1`` paths its reply takes OpenAI's shape. Call after
    ``api.errors.install_error_handlers``."""
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _scoped(handler)  # type: ignore[arg-type]
