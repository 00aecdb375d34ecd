"""The browser playground (``GET /``), its static assets (``/static/...``) and offline ``/docs``.

Everything the page needs ships in ``api/static/`` (plain HTML, vanilla JS and CSS, no build step,
no CDN): the playground talks to the public API only, with the key the user types in. ``/docs`` is
Swagger UI from a vendored, pinned copy (``api/static/vendor/swagger-ui/``), so it renders on a
host without internet. None of these routes are in the OpenAPI schema, and none need a key.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from api.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
SWAGGER_UI_VERSION = "5.35.0"
_SWAGGER = "static/vendor/swagger-ui"

router = APIRouter(include_in_schema=False)

# The playground loads only its own files and talks only to this API; results (MP4, PNG) may come
# from presigned S3 links on another origin. Never framed (it keeps the key in localStorage).
PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; "
    "manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _docs_csp(html: str) -> str:
    """/docs: Swagger UI's vendored files, its one inline start-up script (allowed by its hash,
    not by 'unsafe-inline') and the inline styles its React components set."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def _prefix(request: Request) -> str:
    """Behind a proxy that mounts the API under a path (``root_path``), links keep that prefix."""
    return str(request.scope.get("root_path") or "").rstrip("/")


@router.get("/", response_class=FileResponse)
def playground() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": PLAYGROUND_CSP},
    )


@router.get("/static/{path:path}", response_class=FileResponse)
def static_file(path: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    try:
        target = (root / path).resolve()
        found = target.is_relative_to(root) and target.is_file()
    except (ValueError, OSError):  # a NUL byte, a name too long for the file system
        found = False
    if not found:
        raise ApiError("not_found", "no such file")
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        media_type = "text/javascript"
    # Vendored files never change under a pinned version; the page's own files may, between releases.
    cache = "public, max-age=86400" if "vendor" in target.relative_to(root).parts else "no-cache"
    return FileResponse(target, media_type=media_type, headers={"Cache-Control": cache})


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    prefix = _prefix(request)
    page = get_swagger_ui_html(
        openapi_url=f"{prefix}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{prefix}/{_SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{prefix}/{_SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{prefix}/{_SWAGGER}/favicon-32x32.png",
        # No badge that asks validator.swagger.io about the schema: nothing leaves the host.
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = _docs_csp(bytes(page.body).decode())
    return page
