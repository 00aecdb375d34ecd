"""Per-request context (pure ASGI): request id, header-count and body size limits, security headers,
access log, HTTP metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, problem_response
from api.metrics import ApiMetrics
from jobs.logs import request_id_var

log = logging.getLogger("api.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# More header fields than this: 431 before anything else runs. (Their bytes are bounded by the
# server, ``api.server.MAX_HEADER_BYTES``.) Browsers send about 20.
MAX_HEADERS = 100

# On every response that does not set its own: no MIME sniffing, never framed (the playground keeps
# the key in localStorage; clickjacking it must not work), and a policy for any HTML that is not
# the playground's or /docs' own (those routes send a fuller one).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
    (b"referrer-policy", b"no-referrer"),
)


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus each of :data:`SECURITY_HEADERS` it does not already carry."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *((name, value) for name, value in SECURITY_HEADERS if name not in present)]


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__("body_too_large", f"the request body is larger than {limit} bytes")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: ApiMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        limit = self.max_body_bytes

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = with_security_headers(
                    [*message["headers"], (b"x-request-id", request_id.encode())]
                )
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            declared = headers.get(b"content-length", b"")
            if len(scope.get("headers") or ()) > MAX_HEADERS:
                response = problem_response(
                    "headers_too_large", f"the request has more than {MAX_HEADERS} header fields"
                )
                await response(scope, receive, send_with_id)
            elif declared.isdigit() and int(declared) > limit:
                response = problem_response(
                    "body_too_large", f"the request body is larger than {limit} bytes"
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        except Exception:
            # Answer here rather than in Starlette's outermost handler, so the 500 carries the
            # request id; the traceback goes to the log, never to the client.
            log.exception("unhandled error")
            if started_response:
                raise
            response = problem_response(
                "internal_error", "unexpected error; quote the request_id when reporting it"
            )
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            duration = time.perf_counter() - started
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(duration)
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_s": round(duration, 4),
                },
            )
            request_id_var.reset(token)
