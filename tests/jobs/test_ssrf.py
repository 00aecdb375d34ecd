"""The SSRF guard: every refused address class, hostname resolution, pinning and redirects."""

import http.server
import ipaddress
import threading
import time

import pytest

from jobs.intake import ssrf
from jobs.intake.ssrf import FetchError, UnsafeURLError, fetch_bytes, is_public_address, vet_url


def resolver_for(mapping):
    def resolve(host, port):
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    return resolve


PUBLIC = resolver_for({"example.com": ["93.184.216.34"]})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1.2.3:8080/x",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fc00::1]/",
        "http://100.64.0.1/",
        "http://100.127.255.254/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://192.0.2.1/",
        "http://198.18.0.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a00:1]/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://017700000001/",
    ],
)
def test_non_public_addresses_are_refused(url):
    with pytest.raises(UnsafeURLError) as info:
        vet_url(url, resolver=PUBLIC)
    assert info.value.code == "url_address_not_allowed"


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://x/", "ftp://example.com/", "javascript:alert(1)", "dict://x"]
)
def test_non_http_schemes_are_refused(url):
    with pytest.raises(UnsafeURLError) as info:
        vet_url(url, resolver=PUBLIC)
    assert info.value.code == "url_scheme_not_allowed"


def test_credentials_in_url_are_refused():
    with pytest.raises(UnsafeURLError):
        vet_url("http://user:pw@example.com/", resolver=PUBLIC)


def test_hostname_resolving_to_a_private_address_is_refused():
    with pytest.raises(UnsafeURLError):
        vet_url("http://intranet.example/", resolver=resolver_for({"intranet.example": ["10.1.2.3"]}))
    with pytest.raises(UnsafeURLError):
        vet_url("http://localhost/", resolver=resolver_for({"localhost": ["127.0.0.1", "::1"]}))


def test_any_private_answer_among_several_refuses_the_host():
    with pytest.raises(UnsafeURLError):
        vet_url(
            "http://mixed.example/",
            resolver=resolver_for({"mixed.example": ["93.184.216.34", "192.168.0.5"]}),
        )


def test_unresolvable_host_is_refused():
    with pytest.raises(UnsafeURLError) as info:
        vet_url("http://nowhere.invalid/", resolver=PUBLIC)
    assert info.value.code == "url_unresolvable"


def test_public_host_is_vetted_and_pinned_to_its_address():
    vetted = vet_url("https://example.com/a.png", resolver=PUBLIC)
    assert (vetted.host, vetted.port, vetted.ip) == ("example.com", 443, "93.184.216.34")


def test_allow_private_lifts_address_rules_but_not_scheme_rules():
    assert vet_url("http://127.0.0.1:9/", allow_private=True).ip == "127.0.0.1"
    with pytest.raises(UnsafeURLError):
        vet_url("file:///etc/passwd", allow_private=True)


@pytest.mark.parametrize("ip", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(ip):
    assert is_public_address(ipaddress.ip_address(ip))


@pytest.fixture
def http_server():
    """A loopback server: /img serves bytes, /redirect points at /img, /big is large."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/redirect-private":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.end_headers()
                return
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/img")
                self.end_headers()
                return
            body = b"x" * (5000 if self.path == "/big" else 10)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_through_a_hostname_connects_to_the_vetted_address(http_server):
    port = http_server.rsplit(":", 1)[1]
    # "images.test" does not exist in DNS: the request can only succeed if it is pinned to the IP.
    resolver = resolver_for({"images.test": ["127.0.0.1"]})
    data = fetch_bytes(
        f"http://images.test:{port}/img", max_bytes=100, timeout_s=5, allow_private=True, resolver=resolver
    )
    assert data == b"x" * 10


def test_fetch_refuses_loopback_without_allow_private(http_server):
    with pytest.raises(UnsafeURLError):
        fetch_bytes(f"{http_server}/img", max_bytes=100, timeout_s=5, allow_private=False)


def test_every_redirect_is_vetted_again(http_server, monkeypatch):
    assert fetch_bytes(f"{http_server}/redirect", max_bytes=100, timeout_s=5, allow_private=True) == b"x" * 10
    # Treat the loopback test server as "public" so the first hop passes; its redirect aims at
    # the metadata address, which must be refused.
    monkeypatch.setattr(ssrf, "is_public_address", lambda ip: str(ip) == "127.0.0.1")
    port = http_server.rsplit(":", 1)[1]
    with pytest.raises(UnsafeURLError):
        fetch_bytes(
            f"http://hop.test:{port}/redirect-private",
            max_bytes=100,
            timeout_s=5,
            allow_private=False,
            resolver=resolver_for({"hop.test": ["127.0.0.1"]}),
        )


def test_fetch_enforces_the_size_cap(http_server):
    with pytest.raises(FetchError) as info:
        fetch_bytes(f"{http_server}/big", max_bytes=100, timeout_s=5, allow_private=True)
    assert info.value.code == "image_too_large"


def test_a_too_large_video_url_is_video_too_large_not_image_too_large(http_server):
    """The fetch reports the refused input's own size code; the loader words it like an upload."""
    from jobs.intake.sources import FetchPolicy
    from jobs.intake.videos import VideoRefused, load_video_bytes

    with pytest.raises(FetchError) as info:
        fetch_bytes(
            f"{http_server}/big",
            max_bytes=100,
            timeout_s=5,
            allow_private=True,
            too_large_code="video_too_large",
        )
    assert (info.value.code, info.value.status) == ("video_too_large", 413)
    policy = FetchPolicy(timeout_s=5, allow_private=True, max_redirects=3)
    with pytest.raises(VideoRefused) as refused:
        load_video_bytes(f"{http_server}/big", None, max_bytes=100, fetch=policy)
    assert (refused.value.code, refused.value.status) == ("video_too_large", 413)
    assert refused.value.message == "driving_video is larger than 100 bytes"


@pytest.fixture
def slow_hops():
    """Each hop answers after 1.5 s: /hop1 -> /hop2 -> /img (also slow)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(1.5)
            target = {"/hop1": "/hop2", "/hop2": "/img"}.get(self.path)
            if target:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"x" * 10)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_fetch_limit_covers_every_redirect_and_the_body_together(slow_hops):
    """M5: the limit restarted at each redirect (two slow redirects and a slow body: 38 s for 10)."""
    began = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch_bytes(f"{slow_hops}/hop1", max_bytes=100, timeout_s=2.5, allow_private=True)
    assert err.value.code == "url_fetch_timeout"
    assert time.monotonic() - began < 3.5
    assert fetch_bytes(f"{slow_hops}/hop1", max_bytes=100, timeout_s=8, allow_private=True) == b"x" * 10
