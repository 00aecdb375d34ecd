"""A job no worker's GPU can fit is refused at the door (issue 23): with
``POSEANIMATE_WORKER_GPU_MEMORY_GB`` set, ``POST /animations`` plans the job on such a card with the
engine's memory plan and answers 413 ``job_too_large_for_workers``, nothing queued."""

from __future__ import annotations

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
