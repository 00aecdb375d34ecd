"""The job runner in-process on real Redis and local storage, with the noop backend and one stand-in
animator per failure mode the engine can produce (OOM and bad input cannot be provoked without a GPU
and the engine)."""

import io
import json
import threading
import time

import av
import pytest

from engine.inputs.rules import DEFAULTS
from jobs.contract import EXAMPLE_POSES, JobStatus
from jobs.intake.acceptance import QuotaExceeded, ValidatedJob, accept_job
from jobs.storage import ObjectNotFound, StorageUnavailable
from jobs.store import new_job_id
from tests.support.jobs import noop_runner, png, submit
from worker.animators import GpuOutOfMemory, InvalidJobInput, NoopAnimator


@pytest.fixture
def env(store, redis_srv, tmp_path):
    settings, storage, runner = noop_runner(
        store, redis_srv.url, tmp_path, noop_step_seconds=0.01, cancel_poll_interval_s=0.02, max_attempts=2
    )
    return settings, store, storage, runner


def test_job_runs_to_success_and_uploads_a_decodable_mp4(env):
    _, store, storage, runner = env
    record = submit(env)
    assert runner.run(record.id) == "succeeded"
    done = store.get(record.id)
    assert done.status is JobStatus.SUCCEEDED and done.progress == 1.0 and done.attempts == 1
    assert set(done.timings) >= {"loading", "inverting", "optimizing", "sampling", "encoding", "uploading"}
    assert done.model_name == "noop (no model)"
    with av.open(io.BytesIO(storage.get_bytes(done.outputs["video"]))) as container:
        frames = list(container.decode(video=0))
    # The source, the default transition (the engine's: recorded on the job) and the 2 targets.
    assert len(frames) == done.num_frames == 1 + DEFAULTS.transition_frames + 2 and frames[0].width == 64
    assert storage.get_bytes(done.outputs["poster"]).startswith(b"\x89PNG")


def test_finished_job_is_not_run_again(env):
    _, store, _, runner = env
    record = submit(env)
    runner.run(record.id)
    assert runner.run(record.id) == "skipped"
    assert store.get(record.id).attempts == 1


def test_queued_then_canceled_job_never_reaches_the_model(env):
    _, store, _, runner = env
    record = submit(env)
    store.request_cancel(record.id)
    runner.holder = None  # any use of the model would fail loudly
    assert runner.run(record.id) == "skipped"
    assert store.get(record.id).status is JobStatus.CANCELED


def test_locked_job_is_left_to_its_holder(env):
    _, store, _, runner = env
    record = submit(env)
    assert store.try_lock(record.id, "other-worker", 5)
    assert runner.run(record.id) == "locked"
    assert store.get(record.id).status is JobStatus.QUEUED


def test_job_whose_worker_keeps_dying_fails_as_worker_lost_after_the_cap(env):
    _, store, _, runner = env
    record = submit(env)
    for _ in range(2):  # two attempts started by workers that then died
        store.start_attempt(record.id, 2, "noop", False)
    assert runner.run(record.id) == "failed"
    done = store.get(record.id)
    assert (done.status, done.error_code, done.attempts) == (JobStatus.FAILED, "worker_lost", 2)


def test_running_job_stops_within_a_step_when_canceled_and_uploads_nothing(env):
    _, store, storage, runner = env
    record = submit(env, steps=200)
    threading.Timer(0.3, store.request_cancel, args=(record.id,)).start()
    started = time.monotonic()
    assert runner.run(record.id) == "canceled"
    assert time.monotonic() - started < 3
    assert store.get(record.id).status is JobStatus.CANCELED
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(f"outputs/{record.id}/animation.mp4")


class Failing:
    name, random_weights = "failing", False

    def __init__(self, exc):
        self.exc = exc

    def render(self, job, out_dir, on_progress, should_cancel):
        raise self.exc


@pytest.mark.parametrize(
    "exc,code",
    [
        (GpuOutOfMemory("the GPU ran out of memory"), "gpu_out_of_memory"),
        (InvalidJobInput("source pose has no visible keypoints"), "invalid_input"),
        (RuntimeError("boom /secret/path"), "internal_error"),
    ],
)
def test_engine_failures_fail_the_job_with_a_stable_code_and_the_worker_keeps_serving(env, exc, code):
    _, store, _, runner = env
    runner.holder._animator = Failing(exc)
    bad = submit(env)
    assert runner.run(bad.id) == "failed"
    failed = store.get(bad.id)
    assert failed.error_code == code and "/secret" not in failed.error_message
    runner.holder._animator = NoopAnimator(0.0)
    good = submit(env)
    assert runner.run(good.id) == "succeeded"


def test_missing_inputs_fail_the_job(env):
    _, store, storage, runner = env
    record = submit(env)
    storage.delete_prefix(f"inputs/{record.id}")
    assert runner.run(record.id) == "failed"
    assert store.get(record.id).error_code == "internal_error"


def test_progress_is_published_while_running(env):
    _, store, _, runner = env
    record = submit(env, steps=20)
    pubsub = store.r.pubsub()
    pubsub.subscribe(store.channel(record.id))
    runner.run(record.id)
    events = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            events.append(json.loads(message["data"]))
    stages = [e["stage"] for e in events]
    assert {"loading", "inverting", "sampling", "encoding", "uploading"} <= set(stages)
    progress = [e["progress"] for e in events if e["status"] == "running"]
    assert progress == sorted(progress)
    assert events[-1]["status"] == "succeeded"


def test_quota_is_enforced_at_intake(env):
    _, store, storage, runner = env
    job = ValidatedJob(params={"prompt": "p"}, image_png=png(), poses=EXAMPLE_POSES)
    for _ in range(2):
        accept_job(new_job_id(), "key_q", job, store=store, storage=storage, queue=runner.queue, max_active=2)
    with pytest.raises(QuotaExceeded):
        accept_job(new_job_id(), "key_q", job, store=store, storage=storage, queue=runner.queue, max_active=2)


class DiesWhileSending:
    """A queue client whose process is killed while it sends (BaseException: nothing cleans up)."""

    def enqueue_animation(self, job_id):
        raise SystemExit("killed")


def test_job_whose_api_died_before_enqueueing_is_sent_by_the_sweeper_and_runs_once(env):
    from jobs.recovery import send_unsent

    _, store, storage, runner = env
    job = ValidatedJob(params={"prompt": "p", "steps": 2, "size": 64}, image_png=png(), poses=EXAMPLE_POSES)
    job_id = new_job_id()
    with pytest.raises(SystemExit):
        accept_job(job_id, "key_a", job, store=store, storage=storage, queue=DiesWhileSending(), max_active=5)
    assert store.get(job_id).status is JobStatus.QUEUED  # stranded: no message was sent

    broker = runner.queue.app.connection_for_write().default_channel.client
    before = broker.llen("gpu")
    assert send_unsent(store, runner.queue, older_than_s=0) == [job_id]
    assert broker.llen("gpu") == before + 1
    assert send_unsent(store, runner.queue, older_than_s=0) == []  # sent once, then out of the outbox
    assert runner.run(job_id) == "succeeded"


def test_sweeper_does_not_send_a_job_that_was_canceled_meanwhile(env):
    from jobs.recovery import send_unsent

    _, store, storage, runner = env
    job = ValidatedJob(params={"prompt": "p"}, image_png=png(), poses=EXAMPLE_POSES)
    job_id = new_job_id()
    with pytest.raises(SystemExit):
        accept_job(job_id, "key_a", job, store=store, storage=storage, queue=DiesWhileSending(), max_active=5)
    store.request_cancel(job_id)
    assert send_unsent(store, runner.queue, older_than_s=0) == []
    assert store.claim_unsent(older_than_s=0) == []


def test_running_job_whose_worker_vanished_is_sent_again_and_runs_as_a_new_attempt(env):
    from jobs.recovery import resend_orphaned

    _, store, _, runner = env
    record = submit(env)
    store.start_attempt(record.id, 2, "noop", False)  # a worker started it, then its node was lost
    store.r.zadd(store.running_key, {record.id: 0})  # ... a lock TTL ago
    broker = runner.queue.app.connection_for_write().default_channel.client
    before = broker.llen("gpu")
    assert resend_orphaned(store, runner.queue, lock_ttl_s=2) == [record.id]
    assert broker.llen("gpu") == before + 1
    assert runner.run(record.id) == "succeeded"
    assert store.get(record.id).attempts == 2
    assert resend_orphaned(store, runner.queue, lock_ttl_s=0) == []


@pytest.mark.parametrize("where", ["is_cancel_requested", "update_progress"])
def test_soft_time_limit_landing_in_a_cancel_check_or_progress_write_still_stops_the_job(env, where):
    # Celery raises SoftTimeLimitExceeded wherever the job process is when the limit passes; the
    # best-effort Redis calls between engine steps must not swallow it as "Redis trouble".
    from celery.exceptions import SoftTimeLimitExceeded

    _, store, storage, runner = env
    record = submit(env, steps=40)
    real = getattr(store, where)
    calls = []

    def limit_passes_here(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise SoftTimeLimitExceeded()
        return real(*args, **kwargs)

    setattr(store, where, limit_passes_here)
    assert runner.run(record.id) == "failed"
    assert store.get(record.id).error_code == "timeout"
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(f"outputs/{record.id}/animation.mp4")


class FlakyStorage:
    """The job's storage, unavailable for the first ``failures`` calls of ``method``."""

    def __init__(self, storage, method, failures):
        self.storage, self.method, self.failures = storage, method, failures

    def __getattr__(self, name):
        real = getattr(self.storage, name)
        if name != self.method:
            return real

        def flaky(*args, **kwargs):
            if self.failures > 0:
                self.failures -= 1
                raise StorageUnavailable("S3 put_object failed: EndpointConnectionError")
            return real(*args, **kwargs)

        return flaky


@pytest.mark.parametrize("method", ["get_bytes", "put_file"])
def test_a_storage_blip_while_loading_or_uploading_is_waited_out(env, method):
    _, store, storage, runner = env
    record = submit(env)
    runner.services.storage = FlakyStorage(storage, method, failures=1)
    assert runner.run(record.id) == "succeeded"
    assert storage.get_bytes(store.get(record.id).outputs["video"])


def test_storage_down_past_the_retry_budget_fails_the_job_as_storage_unavailable(env):
    settings, store, storage, runner = env
    record = submit(env)
    runner.services.settings = settings.model_copy(update={"storage_retry_s": 0.0})
    runner.services.storage = FlakyStorage(storage, "put_file", failures=1)
    assert runner.run(record.id) == "failed"
    failed = store.get(record.id)
    assert failed.error_code == "storage_unavailable" and failed.outputs == {}


def test_every_job_knob_reaches_the_engine_config():

    from PIL import Image

    from engine.method.config import AnimateConfig
    from worker.animators import JobInputs, config_overrides

    job = JobInputs(
        image=Image.new("RGB", (8, 8)),
        poses={},
        prompt="p",
        steps=7,
        guidance=3.5,
        transition_frames=2,
        width=96,
        height=64,
        seed=11,
        retarget="bones",
    )
    config = AnimateConfig(**config_overrides(job))
    assert (config.num_inference_steps, config.guidance_scale, config.transition_frames) == (7, 3.5, 2)
    assert (config.width, config.height, config.seed, config.retarget) == (96, 64, 11, "bones")
    # (An override that is not an AnimateConfig field fails the construction above.)


def test_no_job_input_is_silently_dropped_on_its_way_to_the_engine():
    """Every JobInputs field is an engine-config knob or is documented as passed beside the config,
    and then the engine animator reads it (the animate call, or the video writer for fps)."""
    import inspect
    from dataclasses import fields

    from PIL import Image

    from engine.method.config import AnimateConfig
    from worker.animators import BESIDE_CONFIG, CONFIG_KNOBS, EngineAnimator, JobInputs, config_overrides

    assert CONFIG_KNOBS.keys() | BESIDE_CONFIG.keys() == {f.name for f in fields(JobInputs)}
    assert not CONFIG_KNOBS.keys() & BESIDE_CONFIG.keys()
    job = JobInputs(
        image=Image.new("RGB", (8, 8)),
        poses={},
        prompt="p",
        steps=7,
        guidance=3.5,
        transition_frames=2,
        width=96,
        height=64,
        seed=11,
        retarget="bones",
        parts="body+hands",
    )
    config, defaults = AnimateConfig(**config_overrides(job)), AnimateConfig()
    for name, knob in CONFIG_KNOBS.items():  # each knob arrives (values unlike the engine's defaults)
        assert getattr(config, knob) == getattr(job, name) != getattr(defaults, knob), name
    render = inspect.getsource(EngineAnimator.render)
    for name in BESIDE_CONFIG:
        assert f"job.{name}" in render, name
