"""SSRF guard for every URL this service fetches or posts to (image URLs, webhook URLs).

Rules: only ``http``/``https``, no credentials in the URL; the host is resolved and *every*
address must be public — loopback, private, link-local, multicast, reserved, unspecified, CGNAT
(100.64/10), cloud metadata (169.254.169.254, fd00:ec2::254) and their IPv4-mapped / 6to4 /
NAT64 / Teredo IPv6 spellings are refused, as are decimal, octal and hex IPv4 spellings (which
``inet_aton`` accepts). The connection is then pinned to the vetted address, so a DNS answer that
changes between the check and the connect (rebinding) cannot redirect it, and every redirect is
checked again. ``allow_private`` (``POSEANIMATE_ALLOW_PRIVATE_URLS``) lifts the address rules for
tests and local development; the scheme rules stay.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from engine.inputs.errors import CodedRefusal, declare_codes, echo

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_BLOCKED_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, incl. 169.254.169.254 metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fc00::/7",  # unique-local, incl. fd00:ec2::254 (AWS metadata over IPv6)
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "100::/64",
        "2001:db8::/32",
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


URL_CODES = declare_codes(
    {
        "url_invalid": 422,
        "url_scheme_not_allowed": 422,
        "url_credentials_not_allowed": 422,
        "url_address_not_allowed": 422,
        "url_unresolvable": 422,
        "url_fetch_failed": 422,
        "url_fetch_timeout": 422,
        "url_too_many_redirects": 422,
    },
    owner="jobs.intake.ssrf",
)


class UnsafeURLError(CodedRefusal):
    """The URL is not allowed; ``code`` is the API problem code."""


class FetchError(CodedRefusal):
    """Fetching a vetted URL failed, timed out, or brought more than the size cap."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated) ::a.b.c.d
    if int(ip) >> 32 == 0 and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip))
    return None


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (embedded IPv4 checked too)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(embedded):
            return False
    if any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version):
        return False
    return bool(
        ip.is_global
        and not (ip.is_multicast or ip.is_private or ip.is_reserved or ip.is_loopback or ip.is_link_local)
    )


def _parse_ip_literal(host: str) -> IPAddress | None:
    """An IP written in any spelling the C resolver accepts (decimal, octal, hex, short forms)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class VettedURL:
    url: str
    scheme: str
    host: str
    port: int
    ip: str


def vet_url(url: str, *, allow_private: bool = False, resolver: Resolver = system_resolver) -> VettedURL:
    """Check one URL (no fetching) and return the address to connect to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError("url_invalid", "URL does not parse") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeURLError("url_scheme_not_allowed", "only http and https URLs are allowed")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError("url_credentials_not_allowed", "URLs must not carry credentials")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURLError("url_invalid", "URL has no host")
    port = port or (443 if scheme == "https" else 80)
    literal = _parse_ip_literal(host)
    if literal is not None:
        if str(literal) != host.strip("[]").lower() and literal.version == 4:
            # 2130706433, 0177.0.0.1, 0x7f.1: spellings used to slip past naive filters.
            raise UnsafeURLError(
                "url_address_not_allowed", "non-canonical IP address spellings are not allowed"
            )
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeURLError("url_unresolvable", f"host {echo(host)} does not resolve") from exc
        if not addresses:
            raise UnsafeURLError("url_unresolvable", f"host {echo(host)} does not resolve")
    if not allow_private:
        for address in addresses:
            try:
                ip = ipaddress.ip_address(address.split("%")[0])
            except ValueError as exc:
                raise UnsafeURLError(
                    "url_unresolvable", f"host {echo(host)} resolved to {echo(address)}"
                ) from exc
            if not is_public_address(ip) or "%" in address:
                raise UnsafeURLError(
                    "url_address_not_allowed", "URL resolves to a loopback, private or reserved address"
                )
    return VettedURL(url=url, scheme=scheme, host=host, port=port, ip=addresses[0])


def _pinned_request(vetted: VettedURL, method: str, **kwargs: object) -> httpx.Request:
    """A request that connects to the vetted IP but keeps Host and TLS SNI/verification on the name."""
    parts = urlsplit(vetted.url)
    ip = vetted.ip
    netloc = f"[{ip}]" if ":" in ip else ip
    netloc = f"{netloc}:{vetted.port}"
    target = parts._replace(netloc=netloc).geturl()
    headers = dict(kwargs.pop("headers", None) or {})  # type: ignore[call-overload]
    default_port = 443 if vetted.scheme == "https" else 80
    headers["Host"] = vetted.host if vetted.port == default_port else f"{vetted.host}:{vetted.port}"
    extensions = {"sni_hostname": vetted.host} if vetted.scheme == "https" else {}
    return httpx.Request(method, target, headers=headers, extensions=extensions, **kwargs)  # type: ignore[arg-type]


@contextmanager
def guarded_stream(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    allow_private: bool,
    max_redirects: int,
    resolver: Resolver = system_resolver,
    deadline: float | None = None,
    **kwargs: object,
) -> Iterator[httpx.Response]:
    """Send a request through the guard, following redirects by hand (each one vetted). ``deadline``
    (``time.monotonic()``): one limit for all hops; each request gets only the time left."""
    current = url
    for _ in range(max_redirects + 1):
        vetted = vet_url(current, allow_private=allow_private, resolver=resolver)
        request = _pinned_request(vetted, method, **kwargs)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise httpx.ReadTimeout("the fetch's deadline passed between redirects")
            request.extensions["timeout"] = httpx.Timeout(left).as_dict()
        response = client.send(request, stream=True, follow_redirects=False)
        if response.is_redirect and "location" in response.headers:
            response.close()
            current = urljoin(current, response.headers["location"])
            if response.status_code in (301, 302, 303):
                method, kwargs = "GET", {k: v for k, v in kwargs.items() if k == "headers"}
            continue
        try:
            yield response
        finally:
            response.close()
        return
    raise FetchError("url_too_many_redirects", f"more than {max_redirects} redirects")


def fetch_bytes(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    max_redirects: int = 3,
    resolver: Resolver = system_resolver,
    client: httpx.Client | None = None,
    too_large_code: str = "image_too_large",
) -> bytes:
    """GET a URL through the guard with a size cap and a total deadline; content beyond the cap is
    ``too_large_code`` (the refused input's own code: ``image_too_large``, ``video_too_large``)."""
    own = client is None
    client = client or httpx.Client(timeout=timeout_s, trust_env=False)
    deadline = time.monotonic() + timeout_s
    try:
        with guarded_stream(
            client,
            "GET",
            url,
            allow_private=allow_private,
            max_redirects=max_redirects,
            resolver=resolver,
            deadline=deadline,  # one limit for every redirect and the body, not one per hop
        ) as response:
            if response.status_code != 200:
                raise FetchError("url_fetch_failed", f"fetching the URL answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(too_large_code, f"the URL's content is larger than {max_bytes} bytes")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(too_large_code, f"the URL's content is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError("url_fetch_timeout", f"fetching the URL took longer than {timeout_s} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException as exc:
        raise FetchError("url_fetch_timeout", f"fetching the URL took longer than {timeout_s} s") from exc
    except httpx.HTTPError as exc:
        raise FetchError("url_fetch_failed", f"fetching the URL failed: {type(exc).__name__}") from exc
    finally:
        if own:
            client.close()
