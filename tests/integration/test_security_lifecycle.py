"""Issue 10 against the real parts (redis-server, the API under uvicorn, ``poseanimate worker`` with
the noop backend, moto S3 where storage matters): unforgeable links, multipart refusals counted,
deletion and retention, SSE on one Redis connection, processes that die together.

docs/security.md lists each check with the command that reruns it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from jobs.webhooks import generate_secret
from tests.support.payloads import job_body
from tests.support.stack import Service, running_service

pytestmark = pytest.mark.integration

NOOP = {
    "ANIMATOR": "noop",
    "NOOP_STEP_SECONDS": "0.01",
    "RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "100000",
    "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
    "MAX_ACTIVE_JOBS": "1000",
}


def body(**overrides: object) -> dict[str, object]:
    return job_body(steps=2, transition_frames=1, **overrides)


def succeeded(svc: Service, **overrides: object) -> dict:
    reply = svc.api.post("/animations", json=body(**overrides))
    assert reply.status_code == 202, reply.text
    return svc.wait_for_job(reply.json()["id"], lambda j: j["status"] == "succeeded", timeout=60)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    """Local-file storage, development mode, no link-signing secret configured: the mode that used
    to derive the link key from the webhook secret."""
    tmp = tmp_path_factory.mktemp("local")
    overrides = {**NOOP, "STORAGE_URL": (tmp / "storage").as_uri(), "ENV": "development"}
    with running_service(tmp, **overrides) as svc:
        yield svc


# --------------------------------------------------------------------------------------------
# 1. Links: their own secret, one key each, hostile values refused with 403
# --------------------------------------------------------------------------------------------
def _candidate_keys(webhook_secret: str) -> list[bytes]:
    """Every key a webhook receiver could derive from the secret it holds."""
    raw = base64.b64decode(webhook_secret.removeprefix("whsec_"))
    return [
        hashlib.sha256(b"poseanimate-links:" + webhook_secret.encode()).digest(),  # the old derivation
        webhook_secret.encode(),
        raw,
        hashlib.sha256(raw).digest(),
    ]


def test_links_forged_from_the_webhook_secret_are_refused(local):
    job = succeeded(local)
    key = f"outputs/{job['id']}/animation.mp4"
    assert local.api.get(job["output"]["video_url"]).status_code == 200  # the genuine link works
    expires = int(time.time()) + 365 * 24 * 3600
    for secret in _candidate_keys(local.webhook_secret):
        sig = hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()
        reply = local.api.get(f"/files/{key}", params={"expires": expires, "sig": sig})
        assert reply.status_code == 403 and reply.json()["code"] == "link_invalid"


def test_a_link_authorises_exactly_one_key_until_it_expires(local):
    job = succeeded(local)
    link = job["output"]["video_url"]
    query = link.split("?", 1)[1]
    poster = f"/files/outputs/{job['id']}/poster.png?{query}"
    other = succeeded(local)
    neighbour = f"/files/outputs/{other['id']}/animation.mp4?{query}"
    for url in (poster, neighbour):
        reply = local.api.get(url)
        assert reply.status_code == 403 and reply.json()["code"] == "link_invalid", url


@pytest.mark.parametrize(
    "query",
    [
        "",  # no query at all
        "expires=99999999999",
        "sig=" + "0" * 64,
        "expires=99999999999&sig=" + "%C3%A9" * 64,  # non-ASCII signature
        "expires=99999999999&sig=" + "0" * 63,  # truncated
        "expires=99999999999&sig=" + "0" * 65,
        "expires=abc&sig=" + "0" * 64,  # non-integer expiry
        "expires=-1&sig=" + "0" * 64,
        "expires=%EF%BC%91%EF%BC%92&sig=" + "0" * 64,  # full-width digits
        "expires=1e12&sig=" + "0" * 64,
        "expires=" + "9" * 40 + "&sig=" + "0" * 64,
        "expires=99999999999&sig=" + "%00" * 64,
    ],
)
def test_hostile_sig_and_expires_answer_403_link_invalid(local, query):
    job_id = "anim_" + "0" * 26
    reply = local.api.get(f"/files/outputs/{job_id}/animation.mp4?{query}")
    assert reply.status_code == 403, (query, reply.status_code, reply.text)
    assert reply.json()["code"] == "link_invalid"


@pytest.mark.parametrize("path", ["/files/inputs/x/image.png", "/files/outputs/../inputs/x", "/files/%00"])
def test_hostile_paths_never_give_a_5xx(local, path):
    assert local.api.get(f"{path}?expires=1&sig={'0' * 64}").status_code == 404


def test_the_api_refuses_to_start_without_a_link_secret_in_production_or_with_the_webhook_one(tmp_path: Path):
    from api.main import create_app
    from jobs.settings import Settings
    from jobs.storage import LinkSecretMissing

    secret = generate_secret()
    base = {"storage_url": (tmp_path / "s").as_uri(), "redis_url": "redis://127.0.0.1:9/0"}
    with pytest.raises(LinkSecretMissing):
        create_app(Settings(_env_file=None, webhook_secret=secret, **base))
    with pytest.raises(ValueError, match="webhook secret"):
        Settings(_env_file=None, webhook_secret=secret, link_signing_secret=secret, **base)
    assert create_app(Settings(_env_file=None, link_signing_secret="l" * 32, **base))  # configured: starts


# --------------------------------------------------------------------------------------------
# 2. Malformed multipart: 400 malformed_multipart, counted as an invalid submission
# --------------------------------------------------------------------------------------------
def _invalid_count(svc: Service) -> float:
    import re

    text = svc.api.get("/metrics").text
    match = re.search(r'^poseanimate_jobs_submitted_total\{outcome="invalid"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART_CASES = {
    "missing boundary": ("multipart/form-data", _multipart([("prompt", None, b"x")])),
    "garbage body": ("multipart/form-data; boundary=XyZ", b"\x00\xff garbage \r\n--nope\r\n" * 50),
    "too many files": (
        "multipart/form-data; boundary=XyZ",
        _multipart([(f"f{i}", f"f{i}.png", b"x") for i in range(6)]),
    ),
    "too many fields": (
        "multipart/form-data; boundary=XyZ",
        _multipart([(f"field{i}", None, b"x") for i in range(40)]),
    ),
    "oversize part": (
        "multipart/form-data; boundary=XyZ",
        _multipart([("poses", None, b"[" * (4 * 1024 * 1024 + 10))]),
    ),
}


@pytest.mark.parametrize("case", sorted(MULTIPART_CASES))
def test_malformed_multipart_answers_400_malformed_multipart_and_is_counted_invalid(local, case):
    content_type, data = MULTIPART_CASES[case]
    before = _invalid_count(local)
    reply = local.api.post("/animations", content=data, headers={"Content-Type": content_type})
    assert reply.status_code == 400, (case, reply.status_code, reply.text[:300])
    problem = reply.json()
    assert problem["code"] == "malformed_multipart" and problem["detail"], problem
    assert _invalid_count(local) == before + 1
