"""Issue 24, M1: webhooks never wait behind extractions. The io worker runs a separate consumer for
the ``webhooks`` queue; with the io (extraction) consumer stopped dead (SIGSTOP: as saturated as it
can get) and a backlog of extractions queued, a webhook is still delivered within a second or two.
Before, both shared the io consumer and the webhook waited for every extraction ahead of it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
import redis

from jobs.queue import EXTRACT_TASK, IO_QUEUE, QueueClient, create_celery
from tests.support.servers import redis_server, webhook_receiver, worker_process
from tests.support.stack import local_storage_env, process_env, settings_from_env

pytestmark = pytest.mark.integration


def _consumer(supervisor: int, queue: str) -> psutil.Process:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for child in psutil.Process(supervisor).children():
            cmd = child.cmdline()
            if "--queues" in cmd and cmd[cmd.index("--queues") + 1] == queue:
                return child
        time.sleep(0.2)
    raise AssertionError(f"no {queue} consumer")


def test_a_webhook_is_delivered_while_the_extraction_consumer_is_saturated(tmp_path: Path):
    with redis_server(tmp_path / "redis") as redis_srv, webhook_receiver() as receiver:
        env = local_storage_env(tmp_path, redis_srv.url)
        settings = settings_from_env(env)
        queue = QueueClient(create_celery(settings))
        with worker_process(process_env(env), tmp_path, queues="io") as worker:
            assert worker.proc is not None
            extractor, hooks = _consumer(worker.proc.pid, "io"), _consumer(worker.proc.pid, "webhooks")
            assert extractor.pid != hooks.pid
            deadline = time.monotonic() + 60  # both consumers ready (listening on their queues)
            while time.monotonic() < deadline and worker.log().count(" ready.") < 2:
                time.sleep(0.2)
            assert worker.log().count(" ready.") >= 2, worker.log()[-3000:]
            extractor.send_signal(signal.SIGSTOP)
            try:
                for n in range(20):  # a backlog of one key's extractions, queued before the webhook
                    queue.app.send_task(EXTRACT_TASK, args=[f"pose_backlog{n}"], queue=IO_QUEUE)
                began = time.monotonic()
                queue.enqueue_webhook(
                    "anim_fairness", "deleted", '{"type":"animation.deleted"}', "msg_1", url=receiver.url
                )
                try:
                    hook = receiver.get(timeout=15)
                except Exception:
                    pytest.fail("no webhook arrived:\n" + worker.log()[-4000:])
                waited = time.monotonic() - began
                assert hook.body == b'{"type":"animation.deleted"}'
                assert waited < 3, waited
                assert redis.Redis.from_url(redis_srv.url).llen(IO_QUEUE) >= 19  # the backlog still waits
            finally:
                extractor.send_signal(signal.SIGCONT)
