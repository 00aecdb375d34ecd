"""A job no worker's GPU can fit is refused at the door (issue 23): with
``POSEANIMATE_WORKER_GPU_MEMORY_GB`` set, ``POST /animations`` plans the job on such a card with the
engine's memory plan and answers 413 ``job_too_large_for_workers``, nothing queued."""

from __future__ import annotations

from jobs.contract import JobStatus
from jobs.intake.memory import plan_on_card
from tests.support.api import assert_problem, nothing_enqueued
from tests.support.payloads import job_body


def test_a_job_no_worker_card_fits_is_413_and_one_that_fits_is_accepted(make_client, make_settings):
    body = job_body(size=1024, steps=50)
    small = make_client(make_settings(worker_gpu_memory_gb=4))
    problem = assert_problem(small.post("/animations", json=body), 413, "job_too_large_for_workers")
    assert "4 GB" in problem["detail"]
    nothing_enqueued(small)

    large = make_client(make_settings(worker_gpu_memory_gb=24))
    assert large.post("/animations", json=body).status_code == 202

    unset = make_client(make_settings())  # no setting: no check
    assert unset.post("/animations", json=body).status_code == 202


def test_the_check_is_the_engine_plan_with_offload_allowed():
    params = {"width": 1024, "height": 1024, "steps": 50}
    assert not plan_on_card(4, params, 21).fits
    on_five = plan_on_card(5, params, 21)  # fits only with the weights offloaded between stages
    assert on_five.fits and on_five.offload
    assert plan_on_card(8, params, 21).fits and not plan_on_card(8, params, 21).offload


def test_the_job_view_shows_the_memory_plan_the_worker_recorded(client):
    from worker.memory import plan_view

    job_id = client.post("/animations", json=job_body()).json()["id"]
    assert client.get(f"/animations/{job_id}").json()["memory_plan"] is None  # not run yet
    engine_record = {  # engine.method.batching's record of a planned CUDA job
        "source": "memory model",
        "fits": True,
        "available_bytes": 20 * 2**30,
        "offload": True,
        "reason": "",
        "predicted_peak_bytes": 7 * 2**30,
        "stages": {
            "sampling": {
                "chunk": 3,
                "chunks": [3, 2],
                "checkpointing": False,
                "peak_bytes": 7 * 2**30,
                "offloaded": ["vae", "text_encoder"],
            },
        },
        "chunks_at_end": {"sampling": 3},
        "checkpointing": True,
    }
    services = client.app.state.services
    services.store.start_attempt(job_id, 3, "worker-1", False)
    services.store.transition(
        job_id, JobStatus.SUCCEEDED, memory_plan=plan_view(engine_record, 1, {"sampling": 6 * 2**30})
    )
    plan = client.get(f"/animations/{job_id}").json()["memory_plan"]
    assert plan["offload"] is True and plan["checkpointing"] is True and plan["oom_backoffs"] == 1
    assert plan["predicted_peak_bytes"] == 7 * 2**30
    assert plan["stages"]["sampling"] == {
        "chunk": 3,
        "chunks": [3, 2],
        "checkpointing": False,
        "offloaded": ["vae", "text_encoder"],
        "predicted_peak_bytes": 7 * 2**30,
        "actual_peak_bytes": 6 * 2**30,
    }
