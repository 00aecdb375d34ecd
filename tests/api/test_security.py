"""Security basics (issue 6): secrets never in logs, job records or settings reprs; signed links
expire; CORS off unless configured, and then only for the listed origins; request ids in logs.

Containers running as non-root and secrets coming from the environment are pinned by
tests/deploy (test_dockerfiles.py, test_compose.py, test_kubernetes.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pydantic import SecretStr

from jobs.logs import JsonFormatter
from jobs.settings import Settings
from jobs.webhooks import generate_secret
from tests.support.api import KEY_A, KEY_B, finish_with_outputs
from tests.support.payloads import job_body

WEBHOOK_SECRET = generate_secret()
LINK_SECRET = "link-signing-secret-value"
WRONG_KEY = "sk-wrong-but-still-secret"
BODY_MARKER = "prompt-that-must-not-be-logged"


def redis_dump(store: Any) -> str:
    """Every value the service wrote under its key prefix, as one string."""
    out = []
    for key in store.r.scan_iter(match=f"{store.p}:*", count=1000):
        kind = store.r.type(key)
        if kind == "hash":
            out.append(repr(store.r.hgetall(key)))
        elif kind == "string":
            out.append(repr(store.r.get(key)))
        elif kind == "list":
            out.append(repr(store.r.lrange(key, 0, -1)))
        elif kind == "zset":
            out.append(repr(store.r.zrange(key, 0, -1)))
        out.append(key)
    return "\n".join(out)


class JsonLines(logging.Handler):
    """The service's JSON log lines, formatted as they are emitted (inside the request context)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Not the test client's own request lines: httpx logs each URL at INFO, and the service's
        # logging setup turns it down to WARNING (checked below).
        if not record.name.startswith("httpx"):
            self.lines.append(self.format(record))


@pytest.fixture
def json_log():
    handler, root = JsonLines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def secret_client(make_settings, make_client):
    settings = make_settings(
        webhook_secret=WEBHOOK_SECRET, link_signing_secret=LINK_SECRET, allow_private_urls=True
    )
    return make_client(settings)


def test_keys_secrets_links_and_bodies_never_reach_logs_or_job_records(secret_client, json_log, make_client):
    client = secret_client
    body = job_body(prompt=BODY_MARKER, webhook_url="http://127.0.0.1:9/hook")
    job_id = client.post("/animations", json=body, headers={"Idempotency-Key": "idem-1"}).json()["id"]
    finish_with_outputs(client, job_id)
    job = client.get(f"/animations/{job_id}").json()
    signed = job["output"]["video_url"]
    assert "sig=" in signed
    client.get(signed)  # the download itself
    client.get("/animations")
    client.post(f"/animations/{job_id}/cancel")
    other = make_client(client.app.state.services.settings, key=KEY_B)
    other.get(f"/animations/{job_id}")  # 404 for the other key
    wrong = make_client(client.app.state.services.settings, key=WRONG_KEY)
    wrong.post("/animations", json=body)  # 401
    client.post("/animations", json=job_body(fps="sk-looks-secret"))  # 422 echoes nothing

    logs = "\n".join(json_log)
    assert '"msg": "request"' in logs  # the access log was captured
    secrets = [KEY_A, KEY_B, WRONG_KEY, WEBHOOK_SECRET, LINK_SECRET, signed.split("sig=")[1], BODY_MARKER]
    for secret in secrets:
        assert secret not in logs, f"{secret[:12]}... appears in the logs"
    stored = redis_dump(client.app.state.services.store)
    assert job_id in stored and BODY_MARKER in stored  # the record is there (the prompt is data)
    for secret in secrets[:-1]:
        assert secret not in stored, f"{secret[:12]}... appears in Redis"


def test_the_http_client_never_logs_the_urls_it_fetches_or_posts_to():
    # Presigned links and webhook URLs pass through httpx, which logs every URL at INFO.
    import logging as std_logging

    from jobs.logs import configure_logging

    root = std_logging.getLogger()
    saved = (root.handlers[:], root.level, std_logging.getLogger("httpx").level)
    try:
        configure_logging("DEBUG")
        assert std_logging.getLogger("httpx").getEffectiveLevel() >= std_logging.WARNING
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        std_logging.getLogger("httpx").setLevel(saved[2])


def test_every_log_line_of_a_request_carries_its_request_id(client, json_log, monkeypatch):
    r = client.get("/animations/anim_00000000000000000000000000", headers={"X-Request-ID": "req-abc-123"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "req-abc-123"
    assert r.json()["request_id"] == "req-abc-123"

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(client.app.state.services.store, "list_owned", boom)
    r = client.get("/animations", headers={"X-Request-ID": "req-def-456"})
    assert r.status_code == 500
    api_lines = [line for line in json_log if '"logger": "api' in line]
    assert len(api_lines) >= 3  # two access lines and the error with its traceback
    assert all('"request_id": "req-' in line for line in api_lines), api_lines
    assert sum('"request_id": "req-def-456"' in line and '"exc"' in line for line in api_lines) >= 1


def test_settings_never_show_secrets_in_their_repr():
    settings = Settings(
        _env_file=None,
        api_keys=[KEY_A],
        webhook_secret=WEBHOOK_SECRET,
        s3_secret_access_key="s3-secret-value",
        link_signing_secret=LINK_SECRET,
    )
    text = repr(settings) + str(settings)
    for secret in (KEY_A, WEBHOOK_SECRET, "s3-secret-value", LINK_SECRET):
        assert secret not in text


def test_no_secret_has_a_default_and_auth_is_on_by_default():
    settings = Settings(_env_file=None)
    assert settings.auth_enabled and settings.api_keys == []
    assert not settings.allow_private_urls and settings.cors_origins == []
    for name, field in Settings.model_fields.items():
        if field.annotation in (SecretStr, SecretStr | None):
            assert getattr(settings, name) is None, name


def test_signed_local_links_stop_working_when_they_expire(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    finish_with_outputs(client, job_id)
    storage = client.app.state.services.storage
    link = storage.url(f"outputs/{job_id}/animation.mp4", 1, "http://testserver")
    assert client.get(link).status_code == 200
    time.sleep(2.1)
    r = client.get(link)
    assert r.status_code == 403 and r.json()["code"] == "link_invalid"
    fresh = client.get(f"/animations/{job_id}").json()["output"]  # a new read mints fresh links
    assert client.get(fresh["video_url"]).status_code == 200


def test_cors_answers_only_the_configured_origins(make_settings, make_client):
    client = make_client(make_settings(cors_origins=["https://app.example"]))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = client.options("/animations", headers={"Origin": "https://app.example", **preflight})
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in ok.headers
    evil = client.options("/animations", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in evil.headers
    simple = client.get("/animations", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
