"""The one loader of a submitted file: an upload, a base64 data URI, or an http(s) URL fetched
through the SSRF guard, at most ``max_bytes``.

A body reader marks a field whose file came in the multipart body with :data:`UPLOADED`; the same
field may instead hold a data URI or a URL (JSON bodies). Images and videos are refused with their
own codes (``image_too_large``/``video_too_large``, ``image_data_uri_invalid``/
``video_data_uri_invalid``, ``image_reference_invalid``/``mask_reference_invalid``/
``video_reference_invalid``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from engine.inputs.errors import Refusal, declare_codes
from jobs.intake.images import ImageValidationError, decode_data_uri
from jobs.intake.ssrf import FetchError, Resolver, UnsafeURLError, fetch_bytes, system_resolver

UPLOADED = "upload:"
"""A field's value when its file came as a multipart part (the bytes travel next to the fields)."""

Family = Literal["image", "video"]

REFERENCE_CODES = declare_codes(
    {
        "image_reference_invalid": 422,
        "mask_reference_invalid": 422,
        "video_reference_invalid": 422,
        "video_data_uri_invalid": 422,
    },
    owner="jobs.intake.sources",
)


@dataclass(frozen=True)
class FetchPolicy:
    """How URLs are fetched: the settings' ``url_fetch_timeout_s``, ``allow_private_urls`` and
    ``url_max_redirects``, and the resolver (tests pass a fake one)."""

    timeout_s: float
    allow_private: bool
    max_redirects: int
    resolver: Resolver = system_resolver


class VideoRefused(Refusal):
    """A driving video refused at intake (its status is its code's)."""


@contextlib.contextmanager
def naming_url_errors(field_name: str) -> Iterator[None]:
    """URL refusals say which field's URL (``image``, ``mask``, ``webhook_url``) and, for a private
    address, which setting allows it in development."""
    try:
        yield
    except (UnsafeURLError, FetchError) as exc:
        message = f"{field_name}: {exc.message}"
        if exc.code == "url_address_not_allowed":
            message += " (for local development only: POSEANIMATE_ALLOW_PRIVATE_URLS=true)"
        exc.message = message
        exc.args = (message,)
        raise


def _refusal(family: Family, code: str, message: str) -> Refusal:
    return ImageValidationError(code, message) if family == "image" else VideoRefused(message, code=code)


def load_reference(
    ref: str, upload: bytes | None, *, what: str, family: Family, max_bytes: int, fetch: FetchPolicy
) -> bytes:
    """The bytes ``ref`` names: the uploaded part, a data URI, or a URL (an image's URL refusals
    name the field; a video's too-large fetch reads like its too-large upload)."""
    if ref == UPLOADED and upload is not None:
        return upload
    if ref.startswith("data:"):
        return decode_data_uri(
            ref, max_bytes=max_bytes, what=what, refused=lambda r, m: _refusal(family, f"{family}_{r}", m)
        )
    if ref.lower().startswith(("http://", "https://")):
        return _fetch(ref, what=what, family=family, max_bytes=max_bytes, fetch=fetch)
    code = f"{what}_reference_invalid" if family == "image" else "video_reference_invalid"
    raise _refusal(family, code, f"{what} must be an uploaded file, an http(s) URL or a data URI")


def _fetch(ref: str, *, what: str, family: Family, max_bytes: int, fetch: FetchPolicy) -> bytes:
    too_large = f"{family}_too_large"
    naming = naming_url_errors(what) if family == "image" else contextlib.nullcontext()
    with naming:
        try:
            return fetch_bytes(
                ref,
                max_bytes=max_bytes,
                timeout_s=fetch.timeout_s,
                allow_private=fetch.allow_private,
                max_redirects=fetch.max_redirects,
                resolver=fetch.resolver,
                too_large_code=too_large,
            )
        except FetchError as exc:
            if family == "video" and exc.code == too_large:
                raise VideoRefused(f"{what} is larger than {max_bytes} bytes", code=too_large) from exc
            raise
