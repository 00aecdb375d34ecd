"""The HTTP server ``poseanimate serve`` runs: uvicorn with the h11 parser and bounds on what one
connection may cost before any key is checked (issue 24, H1).

- **Header bytes**: the request line and headers together at most :data:`MAX_HEADER_BYTES`; h11
  stops buffering there and the connection gets ``400`` and is closed. (uvicorn's default parser,
  httptools, has no such bound: 256 MB of headers reached the app.) The header *count* is bounded
  in the app (``api.middleware``, ``431``), which sees them parsed.
- **Header read timeout**: a connection must deliver a complete request head within
  :data:`HEADER_TIMEOUT_S` of opening (or of the previous response, on a kept-alive connection),
  else it is closed (slowloris). uvicorn has no such timeout: ``timeout_keep_alive`` starts only
  after a response.
- **Body read timeouts**: once the head is in, the body must keep coming, with no pause longer than
  :data:`BODY_IDLE_TIMEOUT_S`, and be complete within :data:`BODY_TIMEOUT_S`; pauses the app causes
  (it has not read what arrived) do not count.
- **Connections**: beyond :data:`MAX_CONNECTIONS` open connections (or requests in flight) uvicorn
  answers ``503`` (``limit_concurrency``); idle kept-alive connections close after
  :data:`KEEP_ALIVE_S`.

Per-client limits (connections per address) are the ingress's job: this bounds the process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "BODY_IDLE_TIMEOUT_S",
    "BODY_TIMEOUT_S",
    "HEADER_TIMEOUT_S",
    "KEEP_ALIVE_S",
    "MAX_CONNECTIONS",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "GuardedH11Protocol",
    "server_options",
]

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
HEADER_TIMEOUT_S = 10.0
BODY_IDLE_TIMEOUT_S = 15.0
# 32 MB (the default MAX_BODY_BYTES) at about 270 kB/s.
BODY_TIMEOUT_S = 120.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body read deadlines (class attributes, so a test or
    :func:`server_options` can shorten them)."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_idle_timeout_s = BODY_IDLE_TIMEOUT_S
    body_timeout_s = BODY_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_idle: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_all()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_all()
            return
        if self.cycle is not cycle:  # a request head completed: its body (if any) is timed now
            self._cancel(self._head_deadline)
            self._head_deadline = None
            if self.conn.their_state is h11.SEND_BODY:
                self._cancel(self._body_deadline)
                self._body_deadline = self.loop.call_later(self.body_timeout_s, self._body_too_slow)
        if self.conn.their_state is h11.SEND_BODY:
            self._cancel(self._body_idle)
            self._body_idle = self.loop.call_later(self.body_idle_timeout_s, self._body_stalled)
        elif self.conn.their_state is h11.IDLE:  # bytes of a next head (pipelined or kept alive)
            self._arm_head_deadline()
        else:
            self._cancel_body_timers()

    def on_response_complete(self) -> None:
        self._cancel_body_timers()
        super().on_response_complete()

    # Timers
    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            self._close()

    def _body_stalled(self) -> None:
        self._body_idle = None
        if self.conn.their_state is not h11.SEND_BODY:
            return
        if self.flow.read_paused:  # the app has not read what arrived: not the client's pause
            self._body_idle = self.loop.call_later(self.body_idle_timeout_s, self._body_stalled)
            return
        self._close()

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        if self.conn.their_state is h11.SEND_BODY:
            self._close()

    def _close(self) -> None:
        self._cancel_all()
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_body_timers(self) -> None:
        self._cancel(self._body_idle)
        self._cancel(self._body_deadline)
        self._body_idle = self._body_deadline = None

    def _cancel_all(self) -> None:
        self._cancel(self._head_deadline)
        self._head_deadline = None
        self._cancel_body_timers()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


def server_options() -> dict[str, Any]:
    """The keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that apply these bounds."""
    return {
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        "limit_concurrency": MAX_CONNECTIONS,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
