"""Reading request bodies the way every route should (issue 24: M2, M4, L3).

- :func:`read_json_object`: the JSON body as a dict, parsed off the event loop when it is big (a
  32 MB body stalled ``/healthz`` for 0.7 s), ``400 malformed_json`` for what is not valid JSON *or
  not valid Unicode*: a lone UTF-16 surrogate (``"\\ud800"``) parses in Python but cannot be stored,
  sent in a webhook or read back by strict parsers (it made a job whose listing answered 500).
- :func:`read_form`: ``request.form(...)`` that also requires the multipart body's closing boundary;
  a body cut before it had its last field silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import Message

from api.errors import ApiError

__all__ = [
    "BIG_BODY_SLOTS",
    "PARSE_OFF_LOOP_BYTES",
    "has_lone_surrogate",
    "parse_json",
    "read_form",
    "read_json_object",
]

# Bodies bigger than this are parsed in a worker thread (json.loads holds the GIL, but the event
# loop gets its turns between the thread's switches instead of waiting for the whole parse).
PARSE_OFF_LOOP_BYTES = 256 * 1024
# Big JSON bodies read and parsed at once per API process (each costs 3-4x its size while parsed).
BIG_BODY_SLOTS = 2
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
# How much of the body's end is kept to find the closing boundary (``--`` + boundary of at most
# 70 characters + ``--``, and an epilogue's line breaks).
_TAIL_BYTES = 256


def has_lone_surrogate(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (JSON types) holds an unpaired surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json(body: bytes) -> Any:
    """``body`` as JSON; ``ApiError(400, malformed_json)`` for invalid JSON, too deep nesting or a
    lone surrogate."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from exc
    if has_lone_surrogate(value):
        raise ApiError(
            400,
            "malformed_json",
            "the body holds an unpaired UTF-16 surrogate (\\ud800-\\udfff): not valid Unicode",
        )
    return value


def _big_body_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _SLOTS.get(loop)
    if slots is None:
        slots = _SLOTS[loop] = asyncio.Semaphore(BIG_BODY_SLOTS)
    return slots


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object (:func:`parse_json`; ``422 validation_error`` if not an object).
    A body over :data:`PARSE_OFF_LOOP_BYTES` (or of unknown length) waits for one of
    :data:`BIG_BODY_SLOTS` before it is read (until then the server stops reading it), then is parsed
    in a thread: ten 32 MB bodies at once cost two bodies' memory, not ten."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= PARSE_OFF_LOOP_BYTES:
        fields = parse_json(await request.body())
    else:
        async with _big_body_slots():
            body = await request.body()
            big = len(body) > PARSE_OFF_LOOP_BYTES
            fields = await run_in_threadpool(parse_json, body) if big else parse_json(body)
            del body
    if not isinstance(fields, dict):
        raise ApiError(422, "validation_error", "the body must be a JSON object")
    return fields


async def read_form(request: Request, **limits: Any) -> FormData:
    """``request.form(**limits)``; for ``multipart/form-data``, raises ``MultiPartException`` when the
    body ends before its closing boundary (``--boundary--``)."""
    content_type = request.headers.get("content-type", "")
    boundary = _boundary(content_type) if content_type.lower().startswith("multipart/") else None
    tail = bytearray()
    receive = request._receive

    async def watched() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            tail.extend(message.get("body", b""))
            del tail[:-_TAIL_BYTES]
        return message

    request._receive = watched
    try:
        form = await request.form(**limits)
    finally:
        request._receive = receive
    cached = getattr(request, "_body", None)  # read before: the stream replayed it, not receive
    if isinstance(cached, bytes):
        tail = bytearray(cached[-_TAIL_BYTES:])
    if boundary is not None and b"--" + boundary + b"--" not in tail:
        await form.close()
        raise MultiPartException("the body ends before its closing boundary")
    return form


def _boundary(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"').encode("latin-1", "replace")
    return None
