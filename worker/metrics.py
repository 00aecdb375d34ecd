"""Worker metrics (Prometheus, base units, no job ids in labels).

Multiprocess mode: ``poseanimate worker`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before anything imports ``prometheus_client``; every process (the Celery parent, its prefork child,
the ``io`` consumer) writes its samples there, and the parent serves the aggregate on one port
(``POSEANIMATE_WORKER_METRICS_PORT``). A per-child port would move whenever Celery replaces a
child; one stable target per worker (per GPU) is what a scrape config and KEDA want.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Jobs run from minutes to an hour on a GPU, seconds on the noop/tiny backends.
_JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))

JOB_RUN_SECONDS = Histogram(
    "poseanimate_job_run_duration_seconds",
    "Wall time of one job attempt on a worker.",
    ["outcome"],
    buckets=_JOB_BUCKETS,
)
JOB_QUEUE_WAIT_SECONDS = Histogram(
    "poseanimate_job_queue_wait_seconds", "Time from submission to first start.", buckets=_JOB_BUCKETS
)
STAGE_SECONDS = Histogram(
    "poseanimate_job_stage_duration_seconds", "Wall time per engine stage.", ["stage"], buckets=_JOB_BUCKETS
)
JOBS_FINISHED = Counter(
    "poseanimate_jobs_finished_total", "Jobs finished by a worker, by outcome.", ["outcome"]
)


def count_finished(outcome: str) -> None:
    """The worker's ``jobs.services.CountFinished``: one ended job, by outcome."""
    JOBS_FINISHED.labels(outcome).inc()


JOB_ATTEMPTS = Counter(
    "poseanimate_job_attempts_total", "Job attempts started (re-runs after a lost worker included)."
)
DUPLICATES_SKIPPED = Counter(
    "poseanimate_job_duplicate_deliveries_total",
    "Redelivered messages not run (job locked or finished).",
    ["reason"],
)
UNET_EVALS = Counter(
    "poseanimate_unet_evaluations_total",
    "U-Net + ControlNet evaluations (per sample), by stage and pass.",
    ["stage", "direction"],
)
GPU_MEMORY_ALLOCATED = Gauge(
    "poseanimate_gpu_memory_allocated_bytes",
    "GPU memory held by tensors after the last job.",
    multiprocess_mode="livemax",
)
GPU_MEMORY_PEAK = Gauge(
    "poseanimate_gpu_memory_peak_bytes", "Peak GPU memory during the last job.", multiprocess_mode="livemax"
)
GPU_MEMORY_TOTAL = Gauge(
    "poseanimate_gpu_memory_total_bytes", "Memory of the worker's GPU.", multiprocess_mode="livemax"
)
MEMORY_PREDICTED_PEAK = Gauge(
    "poseanimate_memory_predicted_peak_bytes",
    "Last job's predicted peak per stage (engine memory plan; above the resident weights on a GPU).",
    ["stage"],
    multiprocess_mode="livemax",
)
MEMORY_ACTUAL_PEAK = Gauge(
    "poseanimate_memory_actual_peak_bytes",
    "Last job's measured peak per stage (CUDA max_memory_allocated, same base); no series on CPU workers.",
    ["stage"],
    multiprocess_mode="livemax",
)
MEMORY_PEAK_RATIO = Gauge(
    "poseanimate_memory_peak_ratio",
    "Last job's actual / predicted peak per stage (above 1: the model under-predicts); CUDA only.",
    ["stage"],
    multiprocess_mode="livemax",
)
MEMORY_OOM_BACKOFFS = Counter(
    "poseanimate_memory_oom_backoffs_total",
    "Out-of-memory halvings of a chunk (the plan's safety net; should stay 0).",
)
MEMORY_OFFLOADS = Counter(
    "poseanimate_memory_offloads_total", "Jobs run with weights offloaded between stages (the plan's choice)."
)
WORKER_INFO = Gauge(
    "poseanimate_worker_info",
    "1 per loaded worker process; labels say which model (random_weights=true: tiny smoke-test model).",
    ["model", "random_weights", "device"],
    multiprocess_mode="livemax",
)
MODEL_LOAD_SECONDS = Gauge(
    "poseanimate_model_load_duration_seconds",
    "Seconds the model took to load in this process.",
    multiprocess_mode="livemax",
)
MODEL_LOADED = Gauge("poseanimate_model_loaded", "1 once the model is loaded.", multiprocess_mode="livemax")
WEBHOOK_DELIVERIES = Counter(
    "poseanimate_webhook_deliveries_total", "Webhook delivery attempts, by result.", ["event", "result"]
)
WEBHOOK_SECONDS = Histogram(
    "poseanimate_webhook_delivery_duration_seconds",
    "Time of one webhook POST.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
