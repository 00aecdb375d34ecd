"""Signed, expiring download links for the local-directory storage backend.

The link (``/files/{key}?expires=..&sig=..``, HMAC-SHA256) is the credential: no API key needed,
like an S3 presigned URL. With S3 storage this route answers 404.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import ServicesDep
from api.errors import ApiError
from api.openapi import problems
from jobs.storage import LocalStorage

router = APIRouter(tags=["files"])

_SIG = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")


@router.get(
    "/files/{key:path}",
    summary="Download an output through a signed link",
    response_class=FileResponse,
    responses=problems(403, 404),
)
def get_file(
    key: str,
    services: ServicesDep,
    expires: Annotated[str | None, Query(description="Unix time the link expires")] = None,
    sig: Annotated[str | None, Query(description="HMAC-SHA256 of the key and expiry, hex")] = None,
) -> FileResponse:
    # Parsed here, not by FastAPI: a missing, truncated, non-ASCII or non-integer value is a bad
    # link (403 link_invalid), never a 422 or a 500.
    storage = services.storage
    if not isinstance(storage, LocalStorage) or not key.startswith("outputs/"):
        raise ApiError("not_found", "no such file")
    try:
        path = storage.open_path(key)
    except ValueError as exc:
        raise ApiError("not_found", "no such file") from exc
    valid = (
        expires is not None
        and sig is not None
        and _EXPIRES.fullmatch(expires) is not None
        and _SIG.fullmatch(sig) is not None
        and storage.verify(key, int(expires), sig)
    )
    if not valid:
        raise ApiError("link_invalid", "the link is invalid or has expired")
    if not path.is_file():
        raise ApiError("not_found", "no such file")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=path.name)
