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
    from jobs.queue import QueueClient, create_celery
    from jobs.settings import Settings
    from jobs.storage import LocalStorage
    from tests.support.jobs import submit
    from worker import tasks
    from worker.animators import AnimatorHolder
    from worker.runner import JobRunner

    settings = Settings(
        _env_file=None, redis_url=redis_srv.url, animator="noop", storage_url=f"file://{tmp_path}"
    )
    storage = LocalStorage(tmp_path, b"k" * 32)
    queue = QueueClient(create_celery(settings))
    runner = JobRunner(settings, store, storage, queue, AnimatorHolder(settings))
    monkeypatch.setattr(tasks, "_runtime", tasks.Runtime(settings, store, runner, queue))
    record = submit((settings, store, storage, runner))
    store.start_attempt(record.id, 3, "noop", False)

    # What Celery's parent process calls after killing the child at the hard limit.
    tasks.animate.on_failure(TimeLimitExceeded(3600), "task-id", [record.id], {}, None)

    failed = store.get(record.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "timeout"
    tasks.animate.on_failure(TimeLimitExceeded(3600), "task-id", [record.id], {}, None)  # idempotent
    assert store.get(record.id).status is JobStatus.FAILED
