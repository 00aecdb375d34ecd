"""Deleting a job with a webhook sends one signed ``animation.deleted`` event (issue 10), on the real
stack: uvicorn, Redis, the io worker and a webhook receiver."""

from __future__ import annotations

import time

import pytest

from jobs.contract import EXAMPLE_POSES
from jobs.webhooks import verify
from tests.support.payloads import data_uri, png_bytes

pytestmark = pytest.mark.integration


def test_deleting_a_job_with_a_webhook_sends_a_signed_deleted_event(service):
    body = {
        "image": data_uri(png_bytes(size=64)),
        "poses": {"width": 512, "height": 512, "frames": [EXAMPLE_POSES["frames"][1]]},
        "prompt": "a person",
        "steps": 1,
        "size": 64,
        "transition_frames": 0,
        "webhook_url": service.receiver.url,
        "webhook_events": ["completed"],  # `deleted` is sent whatever the subscription
    }
    job_id = service.api.post("/animations", json=body).json()["id"]
    assert service.api.delete(f"/animations/{job_id}").status_code == 204
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hook = service.receiver.get(timeout=max(0.1, deadline - time.monotonic()))
        payload = hook.json()
        if payload["data"].get("id") == job_id and payload["type"] == "animation.deleted":
            verify(service.webhook_secret, hook.headers, hook.body)
            assert payload["data"] == {"id": job_id, "object": "animation", "deleted": True}
            return
    pytest.fail("no animation.deleted webhook arrived")
