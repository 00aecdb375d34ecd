"""The Celery task shells: importing them stays torch-free; a hard time limit fails the job as timeout."""

import subprocess
import sys
from pathlib import Path

from celery.exceptions import TimeLimitExceeded

from jobs.contract import JobStatus
from tests.support.layout import torch_free_import_check

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_tasks_imports_no_torch_and_only_the_engines_torch_free_leaves():
    code = torch_free_import_check("import worker.tasks, cli.main", ("torch", "diffusers"))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_hard_time_limit_fails_the_running_job_as_timeout(store, redis_srv, tmp_path, monkeypatch):
    from tests.support.jobs import noop_runner, submit
    from worker import tasks

    settings, storage, runner = noop_runner(store, redis_srv.url, tmp_path)
    monkeypatch.setattr(tasks, "_runner", runner)
    record = submit((settings, store, storage, runner))
    store.start_attempt(record.id, 3, "noop", False)

    # What Celery's parent process calls after killing the child at the hard limit.
    tasks.animate.on_failure(TimeLimitExceeded(3600), "task-id", [record.id], {}, None)

    failed = store.get(record.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "timeout"
    tasks.animate.on_failure(TimeLimitExceeded(3600), "task-id", [record.id], {}, None)  # idempotent
    assert store.get(record.id).status is JobStatus.FAILED
