"""The server ``poseanimate serve`` runs (``api.server``, issue 24 H1): what one connection may cost
before any key is checked. A real uvicorn in a child process (so its memory can be measured) with the
shipped options and shortened timeouts, in front of a minimal ASGI app that reads the body."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.support.servers import free_port, wait_for_port

SERVER = textwrap.dedent(
    """
    import sys, uvicorn
    from api.server import GuardedH11Protocol, server_options

    port, head, idle, total, cap = sys.argv[1:6]
    GuardedH11Protocol.header_timeout_s = float(head)
    GuardedH11Protocol.body_idle_timeout_s = float(idle)
    GuardedH11Protocol.body_timeout_s = float(total)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(size).encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    options = server_options()
    options["limit_concurrency"] = int(cap)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="critical", **options)
    """
)


class Server:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port, self.process = port, process

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(head: float = 1.0, idle: float = 1.0, total: float = 3.0, cap: int = 64) -> Server:
        port = free_port()
        args = [str(port), str(head), str(idle), str(total), str(cap)]
        process = subprocess.Popen([sys.executable, "-c", SERVER, *args])
        started.append(process)
        wait_for_port(port)
        return Server(port, process)

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


def closed_after(sock: socket.socket, limit_s: float) -> float | None:
    """Seconds until the server closes ``sock`` (reads and discards any answer), None if it stays
    open ``limit_s``."""
    began = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - began < limit_s:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - began
        except TimeoutError:
            continue
        except ConnectionError:
            return time.monotonic() - began
    return None


def answer(sock: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body)."""
    data = b""
    sock.settimeout(5)
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_normal_request_and_a_kept_alive_second_one_are_served(serve):
    server = serve()
    with server.connect() as sock:
        for body in (b"", b"hello"):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            reply = answer(sock)
            assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\n%d" % len(body))
            time.sleep(0.5)  # under the head timeout: the connection stays usable


def test_256_mb_of_headers_close_the_connection_with_memory_flat(serve):
    server = serve(head=30)
    before = server.rss_mb()
    sent, reply = 0, b""
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"a" * 1014 + b"\r\n"  # 1 KiB per header
        chunk = line * 1024
        try:
            while sent < 256 * 2**20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            reply = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert sent < 256 * 2**20, "the server read 256 MB of headers"
    assert reply == b"" or reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))
    assert server.rss_mb() - before < 20


def test_slowloris_connections_are_closed_after_the_header_timeout(serve):
    server = serve(head=1.0)
    socks = [server.connect() for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        began = time.monotonic()
        for _ in range(3):  # keep trickling header bytes: the deadline is for the whole head
            time.sleep(0.3)
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-a: b\r\n")
        for sock in socks:
            waited = closed_after(sock, 5)
            assert waited is not None, "a slowloris connection stayed open"
        assert time.monotonic() - began < 4
    finally:
        for sock in socks:
            sock.close()


def test_a_connection_that_never_sends_a_byte_is_closed(serve):
    server = serve(head=1.0)
    with server.connect() as sock:
        waited = closed_after(sock, 5)
    assert waited is not None and waited < 3


def test_a_stalled_body_is_closed_after_the_idle_timeout(serve):
    server = serve(idle=1.0, total=30)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        waited = closed_after(sock, 6)
    assert waited is not None and waited < 4


def test_a_trickled_body_is_closed_at_the_body_deadline(serve):
    server = serve(idle=5.0, total=2.0)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        began = time.monotonic()
        closed = False
        while time.monotonic() - began < 6:
            try:
                sock.sendall(b"x")
            except OSError:
                closed = True
                break
            if closed_after(sock, 0.3) is not None:
                closed = True
                break
    assert closed and time.monotonic() - began < 4.5


def test_connections_beyond_the_cap_answer_503(serve):
    server = serve(head=30, cap=4)
    idle = [server.connect() for _ in range(4)]
    try:
        time.sleep(0.3)
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer(sock).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()


def test_poseanimate_serve_runs_uvicorn_with_the_bounds(monkeypatch):
    import uvicorn

    from api.server import GuardedH11Protocol, server_options
    from cli.main import main

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    assert main(["serve", "--port", "8123"]) == 0
    assert seen["http"] is GuardedH11Protocol
    for name, value in server_options().items():
        assert seen[name] == value
