"""API metrics (Prometheus, base units). One registry per app, so tests can build several apps.

Labels are bounded: the route *template* (``/animations/{job_id}``), never a job id or a raw path.
Queue depth is read from Redis at scrape time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jobs.queue import GPU_QUEUE, IO_QUEUE, WEBHOOK_QUEUE, QueueClient
from jobs.store import JobStore

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    def __init__(self, store: JobStore, queue: QueueClient) -> None:
        self.store, self.queue = store, queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("poseanimate_queue_jobs", "Jobs waiting in the queue (status queued).")
        messages = GaugeMetricFamily(
            "poseanimate_broker_queue_messages", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        running = GaugeMetricFamily("poseanimate_jobs_running", "Jobs running now (held job locks).")
        oldest = GaugeMetricFamily(
            "poseanimate_queue_oldest_job_age_seconds", "How long the oldest queued job has waited."
        )
        try:
            jobs.add_metric([], self.store.queue_depth())
            running.add_metric([], self.store.running_count())
            oldest.add_metric([], self.store.oldest_queued_age(time.time()))
            for name in (GPU_QUEUE, IO_QUEUE, WEBHOOK_QUEUE):
                messages.add_metric([name], self.queue.broker_queue_length(name))
        except Exception:  # a scrape must not fail because Redis blinked
            log.warning("queue metrics unavailable", exc_info=True)
            return
        yield jobs
        yield running
        yield oldest
        yield messages


class ApiMetrics:
    def __init__(self, store: JobStore, queue: QueueClient) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "poseanimate_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "poseanimate_http_request_duration_seconds",
            "HTTP request latency by route and method.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.submitted = Counter(
            "poseanimate_jobs_submitted_total",
            "POST /animations by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(QueueCollector(store, queue))
