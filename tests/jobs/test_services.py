"""``jobs.services``: the one place where a job ends, checked twice. By reading the product code: no
module but ``jobs/services.py`` fails or cancels a job, emits a webhook or counts an outcome (so a
new path cannot end a job without its webhook and count). By running it: ``fail_job`` and
``cancel_job`` on real Redis, applied once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jobs.contract import EXAMPLE_POSES, JobStatus
from jobs.intake.acceptance import ValidatedJob, accept_job
from jobs.intake.limits import effective_params
from jobs.services import JobServices
from jobs.storage import LocalStorage
from jobs.store import CancelOutcome, new_job_id

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("api", "jobs", "worker", "cli")
SERVICES = "jobs/services.py"


def calls(predicate) -> dict[str, list[str]]:
    """Product module -> the source of each call or name for which ``predicate(node)`` holds (the job
    store's own package, which defines ``fail`` and ``transition``, aside)."""
    found: dict[str, list[str]] = {}
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.is_relative_to(REPO / "jobs" / "store"):
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if predicate(node):
                    found.setdefault(str(path.relative_to(REPO)), []).append(ast.unparse(node))
    return found


def method_call(node, name: str, receiver_suffix: str = "") -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
        and ast.unparse(node.func.value).endswith(receiver_suffix)
    )


def status_argument(node, status: str) -> bool:
    return any(ast.unparse(arg) == f"JobStatus.{status}" for arg in node.args)


def test_only_the_job_services_fail_a_job():
    failing = calls(
        lambda n: (
            method_call(n, "fail", "store") or (method_call(n, "transition") and status_argument(n, "FAILED"))
        )
    )
    # jobs/intake/acceptance.py: a job whose queue message could not be sent is failed there, and the client
    # is told by that request's 503 reply (no worker ever saw it, nothing to notify or count).
    assert set(failing) == {SERVICES, "jobs/intake/acceptance.py"}, failing
    assert failing["jobs/intake/acceptance.py"] == [
        "store.fail(job_id, ErrorCode.QUEUE_UNAVAILABLE, 'the job could not be queued; submit it again')"
    ]


def test_only_the_job_services_cancel_a_job_emit_its_webhook_or_count_it():
    canceling = calls(
        lambda n: (
            method_call(n, "request_cancel")
            or (method_call(n, "transition") and status_argument(n, "CANCELED"))
        )
    )
    # jobs/deletion.py cancels a job it deletes: its webhook is `deleted`, sent to the URL it had.
    assert set(canceling) == {SERVICES, "jobs/deletion.py"}, canceling
    emitting = calls(
        lambda n: (
            (isinstance(n, ast.Name | ast.Attribute) and ast.unparse(n).endswith("emit_webhook"))
            or (
                isinstance(n, ast.Attribute)
                and ast.unparse(n) in ("WebhookEvent.FAILED", "WebhookEvent.CANCELED")
            )
        )
    )
    # jobs/contract.py: the default subscription (DEFAULT_WEBHOOK_EVENTS) names the events.
    assert set(emitting) == {SERVICES, "jobs/contract.py"}, emitting
    queuing = calls(lambda n: method_call(n, "enqueue_webhook"))
    # worker/tasks.py: a delivery's next attempt (the same message again, after a backoff).
    assert set(queuing) == {SERVICES, "worker/tasks.py"}, queuing
    counting = calls(
        lambda n: isinstance(n, ast.Name | ast.Attribute) and ast.unparse(n).endswith("JOBS_FINISHED")
    )
    assert set(counting) == {"worker/metrics.py"}, counting  # count_finished, handed to JobServices


class RecordingQueue:
    def __init__(self) -> None:
        self.webhooks: list[tuple[str, str]] = []

    def enqueue_animation(self, job_id):
        pass

    def enqueue_webhook(self, job_id, event, body, msg_id, **kwargs):
        self.webhooks.append((job_id, event))


@pytest.fixture
def services(store, tmp_path):
    from jobs.settings import Settings

    counted: list[str] = []
    services = JobServices(
        Settings(_env_file=None), store, LocalStorage(tmp_path, b"k" * 32), RecordingQueue(), counted.append
    )
    services.counted = counted  # type: ignore[attr-defined]
    return services


def submit(services: JobServices) -> str:
    params = effective_params({"prompt": "a person", "steps": 2, "fps": 8, "size": 64})
    job = ValidatedJob(
        params=params,
        image_png=b"png",
        poses=EXAMPLE_POSES,
        webhook_url="https://hooks.example.com/poseanimate",
        webhook_events=["failed", "canceled"],
    )
    record = accept_job(
        new_job_id(),
        "key_a",
        job,
        store=services.store,
        storage=services.storage,
        queue=services.queue,
        max_active=5,
    )
    return record.id


def test_fail_job_records_counts_and_notifies_once(services):
    job_id = submit(services)
    assert services.fail_job(job_id, "invalid_input", "no person in the driving video") is True
    failed = services.store.get(job_id)
    assert (failed.status, failed.error_code, failed.error_message) == (
        JobStatus.FAILED,
        "invalid_input",
        "no person in the driving video",
    )
    assert services.counted == ["invalid_input"] and services.queue.webhooks == [(job_id, "failed")]
    assert services.fail_job(job_id, "timeout", "later") is False  # already ended: nothing more
    assert services.cancel_job(job_id) is CancelOutcome.TERMINAL
    assert services.counted == ["invalid_input"] and services.queue.webhooks == [(job_id, "failed")]


def test_cancel_job_ends_a_queued_job_and_asks_a_running_one_to_stop(services):
    queued, running = submit(services), submit(services)
    assert services.cancel_job(queued) is CancelOutcome.CANCELED
    assert services.store.get(queued).status is JobStatus.CANCELED
    services.store.start_attempt(running, 3, "noop", False)
    assert services.cancel_job(running) is CancelOutcome.REQUESTED  # its worker ends it
    assert services.store.get(running).status is JobStatus.RUNNING
    assert services.counted == ["canceled"] and services.queue.webhooks == [(queued, "canceled")]
    assert services.finish_canceled(running) is True  # what the worker does when it stops
    assert services.finish_canceled(running) is False
    assert services.counted == ["canceled", "canceled"]
    assert services.queue.webhooks == [(queued, "canceled"), (running, "canceled")]
