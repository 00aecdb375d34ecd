"""Reading a submission's body, JSON or multipart, for ``POST /animations`` and ``POST /poses`` alike.

HTTP only: the body is parsed into fields (and, for multipart, the uploaded files, whose fields are
marked ``jobs.intake.sources.UPLOADED``); whether the submission is acceptable is the intake's
(``jobs.intake``) to decide.

Hardened (issue 24):

- JSON: ``400 malformed_json`` for what is not valid JSON *or not valid Unicode*: a lone UTF-16
  surrogate (``"\\ud800"``) parses in Python but cannot be stored, sent in a webhook or read back by
  strict parsers (it made a job whose listing answered 500) (M2). A body over
  :data:`PARSE_OFF_LOOP_BYTES` (or of unknown length) waits for one of :data:`BIG_BODY_SLOTS` before
  it is read, then is parsed in a thread: ten 32 MB bodies at once cost two bodies' memory, not ten,
  and ``/healthz`` no longer stalls behind a parse on the event loop (M4).
- Multipart: a body that ends before its closing boundary (``--boundary--``) is
  ``400 malformed_multipart``; it used to be accepted with its cut-off last field dropped (L3).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

from api.errors import ApiError
from engine.inputs.errors import Refusal
from engine.inputs.poseformat import parse_pose_json
from jobs.intake.sources import UPLOADED

# Bodies bigger than this are parsed in a worker thread (json.loads holds the GIL, but the event
# loop gets its turns between the thread's switches instead of waiting for the whole parse).
PARSE_OFF_LOOP_BYTES = 256 * 1024
# Big JSON bodies read and parsed at once per API process (each costs 3-4x its size while parsed).
BIG_BODY_SLOTS = 2
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()
# How much of the body's end is kept to find the closing boundary (``--`` + boundary of at most
# 70 characters + ``--``, and an epilogue's line breaks).
_TAIL_BYTES = 256


@dataclass(frozen=True)
class BodyForm:
    """What one endpoint's multipart form may hold."""

    file_fields: tuple[str, ...]
    max_fields: int
    max_part_size: int
    list_fields: tuple[str, ...] = ()
    """Comma-separated text, read as a list."""
    pose_fields: tuple[str, ...] = ()
    """Pose JSON (a file or text), parsed with ``max_part_size`` as the cap."""
    keep_empty: tuple[str, ...] = ()
    """Fields kept when sent empty (an empty prompt is ``prompt_blank``, not a missing prompt)."""
    urlencoded: bool = False
    """Also take ``application/x-www-form-urlencoded``."""
    strip_suffixes: tuple[str, ...] = ()
    """Dropped from part names (the OpenAI SDK sends lists as ``name[]``, objects as ``name[key]``)."""


@dataclass
class Body:
    fields: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """What a facade read beyond our fields (the OpenAI one: its name, ``seconds``): a replay must
    match it too."""

    def digest(self) -> str:
        """sha256 of the fields and each file's sha256: what an Idempotency-Key replay must match."""
        files = {f"file:{k}": hashlib.sha256(v).hexdigest() for k, v in self.files.items()}
        canonical = {**self.fields, **files, **{f"extra:{k}": v for k, v in self.extra.items()}}
        return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


async def read_body(request: Request, form: BodyForm) -> Body:
    """The JSON object or the multipart form; 400 ``malformed_json``/``malformed_multipart``, 415
    ``unsupported_media_type`` for any other content type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return Body(await _json_object(request))
    multipart = ("multipart/form-data", "application/x-www-form-urlencoded")
    if content_type in (multipart if form.urlencoded else multipart[:1]):
        return await _form(request, form)
    raise ApiError("unsupported_media_type", "send application/json or multipart/form-data")


def has_lone_surrogate(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (JSON types) holds an unpaired surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json(body: bytes) -> Any:
    """``body`` as JSON; 400 ``malformed_json`` for invalid JSON, too deep nesting or a lone
    surrogate."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError("malformed_json", "the body is not valid JSON") from exc
    if has_lone_surrogate(value):
        raise ApiError(
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


async def _json_object(request: Request) -> dict[str, Any]:
    """The JSON object (:func:`parse_json`; 422 ``validation_error`` if not an object); big bodies
    one of :data:`BIG_BODY_SLOTS` at a time, parsed in a thread. ``request.body()`` raises 413
    ``body_too_large`` over the limit."""
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
        raise ApiError("validation_error", "the body must be a JSON object")
    return fields


async def _form_with_closing_boundary(request: Request, **limits: Any) -> FormData:
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


async def _parse_form(request: Request, form: BodyForm) -> FormData:
    try:
        return await _form_with_closing_boundary(
            request,
            max_files=len(form.file_fields),
            max_fields=form.max_fields,
            max_part_size=form.max_part_size,
        )
    except Refusal:  # the body over the limit (413 body_too_large), read while parsing
        raise
    except (MultiPartException, HTTPException, ValueError) as exc:
        # Starlette turns its parser's errors into HTTPException(400) inside an app; python-multipart
        # raises ValueError subclasses on garbage: every one is the client's malformed body.
        detail = exc.message if isinstance(exc, MultiPartException) else getattr(exc, "detail", None)
        raise ApiError(
            "malformed_multipart", f"the multipart body does not parse: {detail or 'invalid body'}"
        ) from exc


def _strip(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        name = name.removesuffix(suffix)
    return name


async def _form(request: Request, form: BodyForm) -> Body:
    parsed = await _parse_form(request, form)
    fields: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for raw_name in set(parsed.keys()):
        values, name = parsed.getlist(raw_name), _strip(raw_name, form.strip_suffixes)
        if name in form.file_fields and isinstance(values[0], UploadFile):
            files[name] = await values[0].read()
            continue
        texts = [v for v in values if isinstance(v, str)]
        if name in form.list_fields:
            items = [part.strip() for text in texts for part in text.split(",")]
            fields[name] = [item for item in items if item]
        elif texts and (texts[0] != "" or name in form.keep_empty):
            fields[name] = texts[0]
    await parsed.close()
    for name in form.pose_fields:
        if name in files:
            fields[name] = parse_pose_json(files.pop(name), max_bytes=form.max_part_size)
        elif isinstance(fields.get(name), str):
            fields[name] = parse_pose_json(fields[name], max_bytes=form.max_part_size)
    fields.update(dict.fromkeys(files, UPLOADED))
    return Body(fields, files)
