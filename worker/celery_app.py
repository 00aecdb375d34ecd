"""The Celery app of worker processes (``celery -A worker.celery_app:app``); tasks in ``worker.tasks``."""

from __future__ import annotations

from jobs.queue import create_celery
from jobs.settings import get_settings

app = create_celery(get_settings(), include=["worker.tasks"])
