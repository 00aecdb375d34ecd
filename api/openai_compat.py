"""OpenAI's error shape on ``/v1``: the same refusals as everywhere else, worded as OpenAI words them.

Every error handler of the app (``api.errors``) still decides the status (its code's, from the code
tables) and our stable ``code``; on a ``/v1`` path its problem+json reply is reshaped
(``api.errors.reshaped``) into ``{"error": {"message", "type", "param", "code"}}`` with a status the
official SDK maps to the right exception class (422/413/415 -> 400: ``BadRequestError``). Elsewhere
nothing changes. So there is one refusal path, and a new refusal gets both shapes for free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.responses import Response

from api.errors import reshaped
from engine.inputs.errors import declare_codes

PREFIX = "/v1"

OPENAI_CODES = declare_codes(
    {
        "model_not_found": 422,  # on /v1, as every 422: 400 (the SDK's BadRequestError)
        "size_invalid": 422,
        "size_ambiguous": 422,
        "seconds_invalid": 422,
        "image_ambiguous": 422,
        "video_not_ready": 409,
        "inputs_not_kept": 409,
        "content_expired": 404,
    },
    owner="api.openai_compat",
)
"""The codes only the ``/v1`` facade refuses with (``api/routes/videos_v1.py``, ``api/openai_body.py``)."""

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
    ("video_options", "driving_video"),
    ("video_invalid", "driving_video"),
    ("video_unreadable", "driving_video"),
    ("video_reference", "driving_video"),
    ("video_data_uri", "driving_video"),
    ("video_too", "driving_video"),
    ("video_type", "driving_video"),
    ("prompt", "prompt"),
    ("subject", "subject_words"),
    ("webhook", "webhook_url"),
    ("model", "model"),
    ("size", "size"),
    ("seconds", "seconds"),
)
# Conflicts that a retry can clear: the SDK retries 409s unless told not to.
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


def openai_shape(problem: dict[str, Any], status: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A problem (its body and status) as OpenAI's error, its status, and the headers it adds."""
    status = _STATUS.get(status, status)
    code = str(problem["code"])
    message = problem.get("detail") or problem.get("title") or code
    errors = problem.get("errors")
    if errors and code == "validation_error":
        first = errors[0]
        message = f"{message}: {'.'.join(first.get('loc', []))}: {first.get('msg', '')}"
    kind = _TYPE.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": _param(problem), "code": code}}
    headers = {"x-request-id": str(problem["request_id"])} if problem.get("request_id") else {}
    if status == 409 and code not in _RETRYABLE_409:
        headers["x-should-retry"] = "false"
    return body, status, headers


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _scoped(handler: Handler) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        response = await handler(request, exc)
        return reshaped(response, openai_shape) if is_v1(request) else response

    return handle


def install_openai_errors(app: FastAPI) -> None:
    """Wrap every installed error handler: on ``/v1`` paths its reply takes OpenAI's shape. Call after
    ``api.errors.install_error_handlers``."""
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _scoped(handler)  # type: ignore[arg-type]
