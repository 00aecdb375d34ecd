"""The API ends a job in one place only: the cancel route's ``JobServices.cancel_job`` (the same
object as the app's store, storage and queue), which queues the ``canceled`` webhook once."""

from __future__ import annotations

from tests.support.api import fake_dns
from tests.support.payloads import job_body


def test_the_cancel_route_ends_a_queued_job_through_the_job_services_and_tells_its_webhook(
    make_client, monkeypatch
):
    client = make_client(resolver=fake_dns)
    services = client.app.state.services
    assert (services.store, services.storage, services.queue) == (
        services.jobs.store,
        services.jobs.storage,
        services.jobs.queue,
    )
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        services.jobs.queue, "enqueue_webhook", lambda job_id, event, *a, **k: sent.append((job_id, event))
    )
    body = job_body(webhook_url="https://hooks.example.com/poseanimate")
    queued, running = (client.post("/animations", json=body).json()["id"] for _ in range(2))
    services.store.start_attempt(running, 3, "noop", False)

    assert client.post(f"/animations/{queued}/cancel").status_code == 200
    assert client.post(f"/animations/{queued}/cancel").status_code == 200  # idempotent: told once
    assert client.post(f"/animations/{running}/cancel").status_code == 202  # its worker ends it
    assert sent == [(queued, "canceled")]
