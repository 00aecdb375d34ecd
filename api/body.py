"""Reading a submission's body, JSON or multipart, for ``POST /animations`` and ``POST /poses`` alike.

HTTP only: the body is parsed into fields (and, for multipart, the uploaded files, whose fields are
marked ``jobs.intake.sources.UPLOADED``); whether the submission is acceptable is the intake's
(``jobs.intake``) to decide.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from api.errors import ApiError
from engine.inputs.errors import Refusal
from engine.inputs.poseformat import parse_pose_json
from jobs.intake.sources import UPLOADED


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


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()  # outside the try: a body over the limit is 413 body_too_large
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError("malformed_json", "the body is not valid JSON") from exc
    if not isinstance(fields, dict):
        raise ApiError("validation_error", "the body must be a JSON object")
    return fields


async def _parse_form(request: Request, form: BodyForm) -> FormData:
    try:
        return await request.form(
            max_files=len(form.file_fields), max_fields=form.max_fields, max_part_size=form.max_part_size
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
