"""The browser playground (``GET /``), its static assets (``/static/...``) and offline ``/docs``.

Everything the page needs ships in ``api/static/`` (plain HTML, vanilla JS and CSS, no build step,
no CDN): the playground talks to the public API only, with the key the user types in. ``/docs`` is
Swagger UI from a vendored, pinned copy (``api/static/vendor/swagger-ui/``), so it renders on a
host without internet. None of these routes are in the OpenAPI schema, and none need a key.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from api.errors import ApiError

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
SWAGGER_UI_VERSION = "5.35.0"
_SWAGGER = "static/vendor/swagger-ui"

router = APIRouter(include_in_schema=False)


def _prefix(request: Request) -> str:
    """Behind a proxy that mounts the API under a path (``root_path``), links keep that prefix."""
    return str(request.scope.get("root_path") or "").rstrip("/")


@router.get("/", response_class=FileResponse)
def playground() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


@router.get("/static/{path:path}", response_class=FileResponse)
def static_file(path: str) -> FileResponse:
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
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
    return get_swagger_ui_html(
        openapi_url=f"{prefix}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{prefix}/{_SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{prefix}/{_SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{prefix}/{_SWAGGER}/favicon-32x32.png",
        # No badge that asks validator.swagger.io about the schema: nothing leaves the host.
        swagger_ui_parameters={"validatorUrl": None},
    )
