"""End to end over HTTP: API (uvicorn) -> Redis -> Celery worker (tiny model, CPU) -> S3 (moto) -> webhook."""

from __future__ import annotations

import io
import json
import time

import av
import httpx
import pytest
from PIL import Image

from jobs.contract import EXAMPLE_POSES
from jobs.webhooks import verify
from tests.support.payloads import data_uri, png_bytes

pytestmark = pytest.mark.integration

SOURCE_POSE = {"width": 512, "height": 512, "frames": [EXAMPLE_POSES["frames"][0]]}
ONE_POSE = {"width": 512, "height": 512, "frames": [EXAMPLE_POSES["frames"][1]]}


def body(**overrides):
    """A small job for the tiny model on a CPU: 64 px, one target pose, one transition frame."""
    return {
        "image": data_uri(png_bytes(size=64, color="orange")),
        "poses": ONE_POSE,
        "source_pose": SOURCE_POSE,
        "prompt": "a person standing",
        "steps": 1,
        "size": 64,
        "transition_frames": 1,
        "fps": 4,
        "seed": 1,
        **overrides,
    }


def terminal(job):
    return job["status"] in ("succeeded", "failed", "canceled")


def hooks_for(service, job_id, count, timeout=30):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            hook = service.receiver.get(timeout=max(0.1, deadline - time.monotonic()))
        except Exception:
            break
        if hook.json()["data"]["id"] == job_id:
            got.append(hook)
        else:
            service.receiver.requests.put(hook)  # someone else's: leave it
            time.sleep(0.05)
    assert len(got) == count, f"expected {count} webhooks for {job_id}, got {len(got)}\n{service.log_tail()}"
    return got


def test_job_succeeds_and_its_mp4_downloads_through_the_presigned_url(service):
    r = service.api.post(
        "/animations",
        json=body(
            steps=2, poses=EXAMPLE_POSES, webhook_url=service.receiver.url, webhook_events=["completed"]
        ),
        headers={"Prefer": "wait=60"},
        timeout=90,
    )
    # Prefer: wait held the reply until the job ended.
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    assert r.headers["preference-applied"] == "wait=60" and r.headers["location"] == f"/animations/{job_id}"
    job = service.api.get(f"/animations/{job_id}").json()
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["attempts"] == 1 and job["error"] is None
    assert job["model"] == {"name": "tiny (random weights)", "random_weights": True}
    assert {"inverting", "optimizing", "sampling", "encoding", "uploading"} <= set(job["timings"])
    assert job["unet_evals"]["total_forward"] > 0
    assert job["memory_plan"]["source"] == "cpu" and job["memory_plan"]["stages"]["sampling"]["chunk"] >= 1
    assert job["num_frames"] == 1 + 1 + 2 and job["params"]["steps"] == 2

    video_url = job["output"]["video_url"]
    assert video_url.startswith(service.s3_endpoint) and "X-Amz-Signature" in video_url
    mp4 = httpx.get(video_url).content
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = list(container.decode(stream))
    assert len(frames) == job["num_frames"] and (frames[0].width, frames[0].height) == (64, 64)
    poster = Image.open(io.BytesIO(httpx.get(job["output"]["poster_url"]).content))
    assert poster.size == (64, 64)
    # The previews: the sequence used, its skeleton video and [source | pose | result], one per frame.
    poses = httpx.get(job["output"]["poses_url"]).json()
    assert len(poses["frames"]) == job["num_frames"] and (poses["width"], poses["height"]) == (64, 64)
    for name in ("skeleton_url", "side_by_side_url"):
        with av.open(io.BytesIO(httpx.get(job["output"][name]).content)) as container:
            assert sum(1 for _ in container.decode(video=0)) == job["num_frames"], name

    (hook,) = hooks_for(service, job_id, 1)
    verify(service.webhook_secret, hook.headers, hook.body)
    payload = hook.json()
    assert payload["type"] == "animation.completed" and payload["data"]["status"] == "succeeded"
    assert payload["data"]["output"]["video_url"]
    deliveries = service.wait_for_job(job_id, lambda j: j["webhook"]["deliveries"])["webhook"]["deliveries"]
    assert (
        deliveries[0]["result"] == "delivered" and deliveries[0]["webhook_id"] == hook.headers["webhook-id"]
    )


def test_sse_reports_progress_until_the_job_ends(service):
    job_id = service.api.post("/animations", json=body(steps=2)).json()["id"]
    events = []
    with service.api.stream("GET", f"/animations/{job_id}/events", timeout=90) as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line[5:])))
    progress = [e for k, e in events if k == "progress"]
    assert {"inverting", "sampling"} <= {e["stage"] for e in progress}
    values = [e["progress"] for e in progress]
    assert values == sorted(values)
    assert events[-1][0] == "status" and events[-1][1]["status"] == "succeeded"


def test_cancel_a_queued_and_a_running_job(service):
    long = service.api.post(
        "/animations", json=body(steps=60, webhook_url=service.receiver.url, webhook_events=["canceled"])
    ).json()
    service.wait_for_job(long["id"], lambda j: j["stage"] in ("optimizing", "inverting", "sampling"))
    queued = service.api.post("/animations", json=body()).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 1

    r = service.api.post(f"/animations/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    r = service.api.post(f"/animations/{long['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    started = time.monotonic()
    running = service.wait_for_job(long["id"], terminal, timeout=30)
    assert running["status"] == "canceled" and time.monotonic() - started < 15
    assert running["output"] is None

    never_ran = service.api.get(f"/animations/{queued['id']}").json()
    assert never_ran["attempts"] == 0 and never_ran["started_at"] is None
    s3 = service.s3()
    for job_id in (long["id"], queued["id"]):
        assert "Contents" not in s3.list_objects_v2(Bucket="poseanimate-it", Prefix=f"it/outputs/{job_id}/")
    (hook,) = hooks_for(service, long["id"], 1)
    assert hook.json()["type"] == "animation.canceled"
    verify(service.webhook_secret, hook.headers, hook.body)


def test_engine_input_error_fails_the_job_and_the_worker_keeps_serving(service):
    # No source pose and a blank image: the engine's detector finds no person (InvalidInput).
    bad = service.api.post("/animations", json=body(source_pose=None)).json()
    failed = service.wait_for_job(bad["id"], terminal)
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_input"
    assert "source_pose" in failed["error"]["message"] and "Traceback" not in failed["error"]["message"]
    good = service.api.post("/animations", json=body()).json()
    assert service.wait_for_job(good["id"], terminal)["status"] == "succeeded"


def test_webhook_is_retried_with_a_stable_id_until_delivered(service):
    service.receiver.responses = [500, 503]
    job_id = service.api.post(
        "/animations", json=body(webhook_url=service.receiver.url, webhook_events=["completed"])
    ).json()["id"]
    service.wait_for_job(job_id, terminal)
    hooks = hooks_for(service, job_id, 3)
    assert len({h.headers["webhook-id"] for h in hooks}) == 1
    assert len({h.body for h in hooks}) == 1
    for hook in hooks:
        verify(service.webhook_secret, hook.headers, hook.body)
    job = service.wait_for_job(job_id, lambda j: len(j["webhook"]["deliveries"]) == 3)
    assert [d["result"] for d in job["webhook"]["deliveries"]] == ["retrying", "retrying", "delivered"]
    assert [d["status_code"] for d in job["webhook"]["deliveries"]] == [500, 503, 200]


def test_webhook_410_stops_retries(service):
    service.receiver.responses = [410]
    job_id = service.api.post(
        "/animations", json=body(webhook_url=service.receiver.url, webhook_events=["completed"])
    ).json()["id"]
    service.wait_for_job(job_id, terminal)
    hooks_for(service, job_id, 1)
    job = service.wait_for_job(job_id, lambda j: j["webhook"]["deliveries"])
    time.sleep(1.2)  # longer than the whole backoff schedule: nothing more may arrive
    job = service.api.get(f"/animations/{job_id}").json()
    assert [d["result"] for d in job["webhook"]["deliveries"]] == ["gone"]


@pytest.mark.parametrize(
    "overrides,status,code",
    [
        ({"image": data_uri(b"not an image")}, 415, "image_unsupported_format"),
        ({"poses": {"width": 512, "height": 512, "frames": []}}, 422, "pose_frame_count"),
        ({"prompt": "x" * 600}, 422, "prompt_too_long"),
        ({"webhook_url": "file:///etc/passwd"}, 422, "url_scheme_not_allowed"),
    ],
)
def test_validation_errors_over_http(service, overrides, status, code):
    r = service.api.post("/animations", json=body(**overrides))
    assert r.status_code == status and r.json()["code"] == code
    assert r.headers["content-type"] == "application/problem+json"


def test_auth_is_required_over_http(service):
    anonymous = httpx.post(f"{service.api_url}/animations", json=body())
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthorized"
    wrong = httpx.get(f"{service.api_url}/animations", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401


def test_worker_and_api_metrics(service):
    text = httpx.get(service.worker_metrics_url).text
    assert 'poseanimate_jobs_finished_total{outcome="succeeded"}' in text
    assert "poseanimate_job_run_duration_seconds_bucket" in text
    assert "poseanimate_job_queue_wait_seconds_count" in text
    assert 'poseanimate_job_stage_duration_seconds_count{stage="sampling"}' in text
    assert 'poseanimate_unet_evaluations_total{direction="forward",stage="sampling"}' in text
    assert "poseanimate_model_load_duration_seconds" in text
    assert 'poseanimate_webhook_deliveries_total{event="completed",result="delivered"}' in text
    assert "anim_" not in text
    api_text = service.api.get("/metrics").text
    assert "poseanimate_queue_jobs" in api_text and "poseanimate_http_requests_total" in api_text
    ready = service.api.get("/readyz").json()
    assert ready["checks"] == {"redis": "ok", "storage": "ok"}


def test_worker_logs_are_json_and_hold_no_secrets(service):
    log = service.worker_log.read_text(errors="replace")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["msg"] == "job succeeded" and r["job_id"].startswith("anim_") for r in records)
    for secret in (service.webhook_secret, "X-Amz-Signature", "sk-integration"):
        assert secret not in log


def test_job_whose_worker_process_is_killed_runs_again_and_finishes_once(service):
    import os
    import signal

    from jobs.store import JobStore

    store = JobStore.from_url(service.env["POSEANIMATE_REDIS_URL"])
    job_id = service.api.post(
        "/animations", json=body(steps=20, webhook_url=service.receiver.url, webhook_events=["completed"])
    ).json()["id"]
    service.wait_for_job(job_id, lambda j: j["status"] == "running" and j["stage"] not in ("loading", None))
    worker = store.get(job_id).worker
    assert worker, "the running attempt records its process"
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)  # as the OOM killer would

    job = service.wait_for_job(job_id, terminal, timeout=300)  # a second attempt on a busy 2-core CPU
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    hooks = hooks_for(service, job_id, 1)  # one completion, one webhook: the job finished once
    assert hooks[0].json()["data"]["attempts"] == 2
