"""A bounded load test on loopback (issue 6): hundreds of submissions and status polls from an
asyncio client against the API over HTTP, the noop backend behind it. Asserts correctness only:
no 5xx, every accepted job reaches a terminal state, and each appears exactly once in the owner's
listing. Throughput and latency percentiles are printed (run with -s), never asserted; the
throughput/latency benchmark is bench/api_load.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.support.payloads import job_body
from tests.support.stack import API_KEY, running_service

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "canceled"}


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    pick = lambda p: ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]  # noqa: E731
    return f"p50 {pick(50) * 1000:.0f} ms, p95 {pick(95) * 1000:.0f} ms, p99 {pick(99) * 1000:.0f} ms"


@dataclass
class LoadResult:
    statuses: list[int]
    accepted: list[str]
    final: dict[str, str]
    listed: list[str]
    report: str


async def run_load(api_url: str, submissions: int, concurrency: int) -> LoadResult:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=concurrency)
    statuses: list[int] = []
    submit_s: list[float] = []
    poll_s: list[float] = []
    accepted: list[str] = []
    final: dict[str, str] = {}
    retried: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=60, limits=limits) as client:

        async def submit(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                r = await client.post("/animations", json=job_body(steps=1, transition_frames=0, seed=i))
                submit_s.append(time.perf_counter() - started)
            statuses.append(r.status_code)
            if r.status_code == 202:
                accepted.append(r.json()["id"])

        async def follow(job_id: str) -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                async with gate:
                    started = time.perf_counter()
                    try:
                        r = await client.get(f"/animations/{job_id}")
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        # A pooled keep-alive connection the server closed as idle while the CPU was
                        # busy with submissions: a client retries an idempotent GET on a new one.
                        retried.append(job_id)
                        continue
                    poll_s.append(time.perf_counter() - started)
                statuses.append(r.status_code)
                if r.status_code == 200 and r.json()["status"] in TERMINAL:
                    final[job_id] = r.json()["status"]
                    return
                await asyncio.sleep(0.2)

        started = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(submissions)))
        submit_wall = time.perf_counter() - started
        await asyncio.gather(*(follow(job_id) for job_id in accepted))
        total_wall = time.perf_counter() - started

        listed: list[str] = []
        cursor = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/animations", params=params)).json()
            listed += [job["id"] for job in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    report = (
        f"{submissions} submissions at concurrency {concurrency}: {len(accepted)} accepted, "
        f"{submissions / submit_wall:.0f} submissions/s ({percentiles(submit_s)}); "
        f"{len(poll_s)} status polls ({percentiles(poll_s)}), {len(retried)} retried on a closed "
        f"keep-alive connection; all terminal after {total_wall:.1f} s"
    )
    return LoadResult(statuses, accepted, final, listed, report)


@pytest.mark.parametrize(
    "submissions",
    [pytest.param(60, id="60-jobs"), pytest.param(400, id="400-jobs", marks=pytest.mark.chaos)],
)
def test_under_load_every_accepted_job_ends_and_is_listed_exactly_once(tmp_path, submissions):
    overrides = {
        "ANIMATOR": "noop",
        "NOOP_STEP_SECONDS": "0",
        "RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "1000000",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000000",
        "MAX_ACTIVE_JOBS": "100000",
        "LOG_LEVEL": "WARNING",
    }
    with running_service(tmp_path, **overrides) as svc:
        result = asyncio.run(run_load(svc.api_url, submissions, concurrency=16))
    print(result.report)
    assert not [s for s in result.statuses if s >= 500], "no 5xx under load"
    assert len(result.accepted) == submissions
    assert result.final == {job_id: "succeeded" for job_id in result.accepted}
    assert sorted(result.listed) == sorted(result.accepted), "every accepted job listed exactly once"
