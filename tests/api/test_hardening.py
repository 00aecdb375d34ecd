"""Issue 24's findings on the app itself: security headers on every page (L5), a header-count bound
(H1, with ``tests/api/test_server_limits.py`` for bytes and timeouts), a NUL in a static path (L2),
and a readiness check that creates what a job creates."""

from __future__ import annotations

import re

import pytest

from tests.support.api import assert_problem, finish_with_outputs
from tests.support.payloads import job_body

PAGES = ["/", "/docs", "/static/playground.js", "/static/vendor/swagger-ui/swagger-ui.css", "/healthz"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_forbids_framing_and_mime_sniffing(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_the_playground_policy_allows_only_its_own_scripts_and_this_api():
    from api.routes.playground import PLAYGROUND_CSP

    directives = dict(d.strip().split(" ", 1) for d in PLAYGROUND_CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["connect-src"] == "'self'"
    assert "unsafe" not in PLAYGROUND_CSP


def test_docs_allow_their_inline_start_up_script_by_hash_only(client):
    r = client.get("/docs")
    policy = r.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert (
        scripts
        and "'sha256-" in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )


def test_signed_file_links_carry_the_headers_too(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    finish_with_outputs(client, job_id)
    url = client.get(f"/animations/{job_id}").json()["output"]["video_url"]
    r = client.get(url)
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "path", ["/static/%00", "/static/a%00b.js", "/static/vendor/%00/x", "/static/" + "a" * 5000]
)
def test_a_nul_or_overlong_static_path_is_404_not_500(client, path):
    assert_problem(client.get(path), 404, "not_found")


def test_more_than_100_header_fields_answer_431(client):
    headers = {f"x-filler-{k}": "1" for k in range(120)}
    assert_problem(client.get("/healthz", headers=headers), 431, "headers_too_large")
    assert client.get("/healthz", headers={f"x-filler-{k}": "1" for k in range(60)}).status_code == 200


def test_readyz_fails_when_job_folders_cannot_be_created(make_settings, make_client, tmp_path):
    root = tmp_path / "storage"
    client = make_client(make_settings(storage_url=f"file://{root}"))
    assert client.get("/readyz").status_code == 200
    (root / ".readyz").write_bytes(b"ok")  # what the old check rewrote
    for folder in ("inputs", "outputs"):
        path = root / folder
        if path.exists():
            import shutil

            shutil.rmtree(path)
        path.write_bytes(b"not a folder")  # nothing can be created under it (even as root)
    r = client.get("/readyz")
    assert r.status_code == 503 and "storage" in r.json()["detail"]
    assert list((root).glob("**/.readyz-*")) == []


def test_prefer_wait_with_5000_digits_is_no_500_after_the_job_was_created(client):
    """L1: int() of 5,000 digits raised after the job existed (a retry duplicated it)."""
    r = client.post("/animations", json=job_body(), headers={"Prefer": "wait=" + "0" * 4999 + "1"})
    assert r.status_code in (200, 202), r.text
    assert r.headers["preference-applied"] == "wait=1"
    assert len(client.get("/animations").json()["data"]) == 1


def test_prefer_wait_numbers_clamp_to_the_cap():
    from api.waiting import MAX_PREFER_WAIT_S, prefer_wait

    assert prefer_wait("wait=" + "9" * 5000) == MAX_PREFER_WAIT_S
    assert prefer_wait("wait=12345") == MAX_PREFER_WAIT_S
    assert prefer_wait("respond-async, wait=7") == 7 and prefer_wait(None) == 0


def test_concurrent_deletes_of_one_job_send_one_deleted_webhook(make_client, monkeypatch):
    """M3: two DELETEs at once both answered 204 and queued animation.deleted twice."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.support.api import fake_dns

    client = make_client(resolver=fake_dns)
    job_id = client.post("/animations", json=job_body(webhook_url="https://example.com/hook")).json()["id"]
    queue = client.app.state.services.queue
    events: list[str] = []
    barrier = threading.Barrier(6)
    real = queue.enqueue_webhook

    def counting(job, event, *args, **kwargs):
        events.append(event)
        return real(job, event, *args, **kwargs)

    monkeypatch.setattr(queue, "enqueue_webhook", counting)
    real_get = client.app.state.services.store.get_owned

    def get_together(*args):
        found = real_get(*args)
        barrier.wait(5)  # every DELETE has read the record before any deletes it
        return found

    monkeypatch.setattr(client.app.state.services.store, "get_owned", get_together)
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda _: client.delete(f"/animations/{job_id}").status_code, range(6)))
    assert statuses == [204] * 6
    assert events == ["deleted"], events
    monkeypatch.setattr(client.app.state.services.store, "get_owned", real_get)
    assert client.get(f"/animations/{job_id}").status_code == 404
    assert client.delete(f"/animations/{job_id}").status_code == 204


def test_an_idempotency_key_whose_job_was_deleted_creates_a_new_job_at_once(client):
    """Walk: reusing the key after DELETE hung 10 s, then answered 409 idempotency_in_progress."""
    import time

    headers = {"Idempotency-Key": "walk-1"}
    first = client.post("/animations", json=job_body(), headers=headers).json()["id"]
    assert client.delete(f"/animations/{first}").status_code == 204
    began = time.monotonic()
    r = client.post("/animations", json=job_body(), headers=headers)
    assert r.status_code == 202 and r.json()["id"] != first, r.text
    assert time.monotonic() - began < 3
    replay = client.post("/animations", json=job_body(), headers=headers)
    assert replay.json()["id"] == r.json()["id"]  # and the key replays the new job as usual
