"""Standard Webhooks (https://www.standardwebhooks.com): signing, verification, one delivery attempt.

Headers: ``webhook-id`` (stable across retries of one event), ``webhook-timestamp`` (Unix seconds of
this attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed
with the base64-decoded part of a ``whsec_...`` secret. Receivers verify with ``verify`` below (or
any Standard Webhooks library) and should refuse timestamps more than 5 minutes off.

Retries (exponential backoff with full jitter, stop on 410) are driven by the ``io``-queue task in
``worker.tasks``; this module makes one attempt and says what happened.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from jobs.intake.ssrf import FetchError, Resolver, UnsafeURLError, guarded_stream, system_resolver

TOLERANCE_S = 5 * 60


class WebhookVerificationError(ValueError):
    pass


def generate_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> None:
    """Raise ``WebhookVerificationError`` unless the request is signed with ``secret`` and fresh."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, ts, sigs = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
        timestamp = int(ts)
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise WebhookVerificationError("timestamp outside the tolerance window")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in sigs.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise WebhookVerificationError("no matching signature")


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def build_payload(event_type: str, job: dict[str, Any], at: float | None = None) -> bytes:
    """``{"type": "animation.completed", "timestamp": ISO-8601, "data": <job>}`` as compact JSON."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))
    return json.dumps({"type": event_type, "timestamp": ts, "data": job}, separators=(",", ":")).encode()


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before attempt ``attempt + 1`` (``attempt`` >= 1)."""
    ceiling = min(max_s, base_s * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class AttemptResult:
    result: str  # delivered | retry | gone | refused
    status_code: int | None
    error: str | None
    duration_s: float


def deliver_once(
    url: str,
    body: bytes,
    *,
    msg_id: str,
    secret: str | None,
    timeout_s: float,
    allow_private: bool,
    resolver: Resolver = system_resolver,
    client: httpx.Client | None = None,
) -> AttemptResult:
    """POST one signed attempt through the SSRF guard (re-checked at send time, redirects refused)."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "PoseAnimate-Webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret:
        headers["webhook-signature"] = sign(secret, msg_id, timestamp, body)
    own = client is None
    client = client or httpx.Client(timeout=timeout_s, trust_env=False)
    started = time.monotonic()
    try:
        # max_redirects=0: a receiver that redirects is misconfigured, and a redirect could aim inward.
        with guarded_stream(
            client,
            "POST",
            url,
            allow_private=allow_private,
            max_redirects=0,
            resolver=resolver,
            content=body,
            headers=headers,
        ) as response:
            code = response.status_code
        duration = time.monotonic() - started
        if 200 <= code < 300:
            return AttemptResult("delivered", code, None, duration)
        if code == 410:
            return AttemptResult("gone", code, None, duration)
        return AttemptResult("retry", code, f"HTTP {code}", duration)
    except UnsafeURLError as exc:
        return AttemptResult("refused", None, exc.code, time.monotonic() - started)
    except FetchError as exc:
        return AttemptResult("retry", None, exc.code, time.monotonic() - started)
    except httpx.HTTPError as exc:
        return AttemptResult("retry", None, type(exc).__name__, time.monotonic() - started)
    finally:
        if own:
            client.close()
