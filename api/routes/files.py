"""Signed, expiring download links for the local-directory storage backend.

The link (``/files/{key}?expires=..&sig=..``, HMAC-SHA256) is the credential: no API key needed,
like an S3 presigned URL. With S3 storage this route answers 404.
"""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import ServicesDep
from api.errors import ApiError
from api.routes.animations import problems
from jobs.storage import LocalStorage

router = APIRouter(tags=["files"])


@router.get(
    "/files/{key:path}",
    summary="Download an output through a signed link",
    response_class=FileResponse,
    responses=problems(403, 404),
)
def get_file(
    key: str,
    services: ServicesDep,
    expires: Annotated[int, Query(ge=0)],
    sig: Annotated[str, Query(min_length=64, max_length=64)],
) -> FileResponse:
    storage = services.storage
    if not isinstance(storage, LocalStorage) or not key.startswith("outputs/"):
        raise ApiError(404, "not_found", "no such file")
    try:
        valid = storage.verify(key, expires, sig)
        path = storage.open_path(key)
    except ValueError as exc:
        raise ApiError(404, "not_found", "no such file") from exc
    if not valid:
        raise ApiError(403, "link_invalid", "the link is invalid or has expired")
    if not path.is_file():
        raise ApiError(404, "not_found", "no such file")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=path.name)
