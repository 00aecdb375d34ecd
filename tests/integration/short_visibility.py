"""The worker's Celery app with a visibility timeout of seconds instead of hours, for chaos tests.

Redis redelivers a message that stays unacknowledged longer than the visibility timeout, even while
its job is still running (celery#5935). The settings refuse a timeout below the hard time limit, so
a test that wants that redelivery sets it here, on the app, and runs
``celery -A tests.integration.short_visibility:app worker`` (``servers.worker_process(celery_app=...)``).
"""

from __future__ import annotations

import os

from worker.celery_app import app

app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": float(os.environ.get("TEST_VISIBILITY_TIMEOUT_S", "2")),
    # kombu looks for overdue messages every interval x throttle seconds (100 s by default)
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
