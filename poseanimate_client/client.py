"""A Python client of the public HTTP API: ``PoseAnimateClient`` (sync) and ``AsyncPoseAnimateClient``.

Typed with the contract's models (``Job``, ``JobList``, ``ProgressEvent``, ``Problem``); torch-free
(httpx and pydantic only). Errors are :class:`PoseAnimateError` with the problem's ``status``,
``code``, ``title`` and ``detail``; 429 and 503 replies are retried after their ``Retry-After``
(bounded: ``max_retries`` times, at most ``max_retry_wait_s`` per wait). ``create`` always sends an
``Idempotency-Key`` (yours, or a fresh one), so a retried submission never makes a second job.

    client = PoseAnimateClient("http://127.0.0.1:8000", api_key="...")
    job = client.create(image="examples/astronaut.jpg", poses="examples/raise_arms.json",
                        prompt="a photo of an astronaut", steps=20, size=256)
    job = client.wait(job.id, on_progress=lambda e: print(e.stage, e.progress))
    client.download(job, "result.mp4")

A driving video goes as it is (``create(image, driving_video="dance.mp4", prompt=...)``): the server
extracts its poses and keeps its sound in the MP4 (``audio=False`` leaves it out).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from jobs.contract import AnimationParams, Job, JobList, JobStatus, Problem, ProgressEvent

__all__ = ["AsyncPoseAnimateClient", "PoseAnimateClient", "PoseAnimateError"]

RETRY_STATUSES = frozenset({429, 503})
PARAMS = tuple(AnimationParams.model_fields)  # prompt, steps, size, width, height, seed, ...
ProgressCallback = Callable[[ProgressEvent], None]
FileLike = str | Path | bytes


class PoseAnimateError(Exception):
    """A refused request (the server's problem+json) or a job that could not be followed."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        problem: Problem | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.problem = problem
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> PoseAnimateError:
        retry = _retry_after(response)
        try:
            problem = Problem.model_validate(response.json())
        except ValueError:
            text = response.text[:300] or response.reason_phrase
            return cls(response.status_code, f"http_{response.status_code}", text, None, retry_after=retry)
        return cls(
            response.status_code,
            problem.code,
            problem.title,
            problem.detail,
            problem=problem,
            retry_after=retry,
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _read(value: FileLike, what: str) -> tuple[str, bytes]:
    if isinstance(value, bytes):
        return what, value
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{what}: no such file: {path}")
    return path.name, path.read_bytes()


def _pose_part(value: FileLike | dict[str, Any] | list[Any], what: str) -> tuple[str, bytes, str]:
    if isinstance(value, dict | list):
        return f"{what}.json", json.dumps(value).encode(), "application/json"
    name, data = _read(value, what)
    return name, data, "application/json"


def _field(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return ",".join(value) if isinstance(value, list | tuple) else str(value)


def _form(
    image: FileLike,
    motion: tuple[FileLike | dict[str, Any] | list[Any] | None, str | Path | None],
    source_pose: FileLike | dict[str, Any] | None,
    webhook_url: str | None,
    webhook_events: list[str] | None,
    params: dict[str, Any],
) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise TypeError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    if "prompt" not in params or not params["prompt"]:
        raise ValueError("prompt is required")
    data: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        data[name] = _field(value)
    if webhook_url:
        data["webhook_url"] = webhook_url
    if webhook_events:
        data["webhook_events"] = ",".join(webhook_events)
    image_name, image_bytes = _read(image, "image")
    files = {"image": (image_name, image_bytes, "application/octet-stream")}
    poses, driving_video = motion
    if poses is not None:
        files["poses"] = _pose_part(poses, "poses")
    if driving_video is not None:
        files["driving_video"] = _video_files(driving_video)["video"]
    if source_pose is not None:
        files["source_pose"] = _pose_part(source_pose, "source_pose")
    return data, files


class _SSEParser:
    """Server-Sent Events, one line at a time: ``feed`` returns a finished ``(event, data)`` or None;
    ``close`` returns the last event of a stream that ended without a blank line."""

    def __init__(self) -> None:
        self.event, self.data = "message", ""

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if line == "":
            return self.close()
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data += line[5:].strip()
        return None

    def close(self) -> tuple[str, dict[str, Any]] | None:
        done = (self.event, json.loads(self.data)) if self.data else None
        self.event, self.data = "message", ""
        return done


def _event(kind: str, data: dict[str, Any]) -> ProgressEvent | Job:
    return Job.model_validate(data) if kind == "status" else ProgressEvent.model_validate(data)


def _polled(job: Job) -> ProgressEvent:
    return ProgressEvent(id=job.id, status=job.status, stage=job.stage, progress=job.progress)


def _stream_fallback(exc: PoseAnimateError) -> None:
    """A stream refused for auth or a missing job is final; anything else falls back to polling."""
    if exc.status in (401, 403, 404):
        raise exc


def _video_files(video: str | Path) -> dict[str, tuple[str, bytes, str]]:
    name, data = _read(video, "driving_video")
    return {"video": (name, data, "video/mp4")}


def _parts_field(parts: str | None) -> dict[str, str]:
    """The ``parts`` form field of ``POST /poses`` (none: the server's default, the whole body)."""
    return {} if parts is None else {"parts": parts}


def _unsupported(exc: PoseAnimateError) -> PoseAnimateError:
    if exc.status in (404, 405):
        return PoseAnimateError(
            exc.status, "poses_unsupported", "this server does not extract poses from videos"
        )
    return exc


def _poses_from(reply: httpx.Response) -> dict[str, Any]:
    body: Any = reply.json()
    if not isinstance(body, dict):
        raise PoseAnimateError(reply.status_code, "bad_reply", "the server's pose reply is not a JSON object")
    poses = body.get("poses", body)
    return dict(poses) if isinstance(poses, dict) else body


def _one_of(poses: object, driving_video: object) -> None:
    if (poses is None) == (driving_video is None):
        raise ValueError("give exactly one of poses or driving_video")


def _list_query(status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {"limit": limit}
    if status:
        query["status"] = status
    if cursor:
        query["cursor"] = cursor
    return query


def _output_url(job: Job, what: str) -> str:
    if job.status is not JobStatus.SUCCEEDED or job.output is None:
        raise PoseAnimateError(409, "no_output", f"job {job.id} has no output (status {job.status})")
    return str(getattr(job.output, f"{what}_url"))


def _wait_timeout(job_id: str, timeout: float) -> PoseAnimateError:
    return PoseAnimateError(408, "wait_timeout", f"job {job_id} did not end in {timeout}s")


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        max_retries: int = 4,
        max_retry_wait_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    def _wait_s(self, response: httpx.Response, attempt: int) -> float:
        after = _retry_after(response)
        return min(after if after is not None else 2.0**attempt * 0.5, self.max_retry_wait_s)

    @staticmethod
    def _submission(
        image: FileLike,
        motion: tuple[FileLike | dict[str, Any] | list[Any] | None, str | Path | None],
        source_pose: FileLike | dict[str, Any] | None,
        idempotency_key: str | None,
        webhook_url: str | None,
        webhook_events: list[str] | None,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        """The keyword arguments of the ``POST /animations`` request."""
        _one_of(*motion)
        data, files = _form(image, motion, source_pose, webhook_url, webhook_events, params)
        headers = {"Idempotency-Key": idempotency_key or f"client-{uuid.uuid4()}"}
        return {"data": data, "files": files, "headers": headers}

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return not a.netloc or (a.scheme, a.netloc) == (b.scheme, b.netloc)


class PoseAnimateClient(_Base):
    """Synchronous client. ``transport`` (an httpx transport) is for tests."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        max_retry_wait_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries=max_retries, max_retry_wait_s=max_retry_wait_s)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> PoseAnimateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            response = self._http.request(method, path, **kwargs)
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                time.sleep(self._wait_s(response, attempt))
                continue
            if response.is_error:
                raise PoseAnimateError.from_response(response)
            return response
        raise AssertionError("unreachable")

    def create(
        self,
        image: FileLike,
        poses: FileLike | dict[str, Any] | list[Any] | None = None,
        driving_video: str | Path | None = None,
        *,
        source_pose: FileLike | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        **params: Any,
    ) -> Job:
        """Submit a job (multipart). Give ``poses`` or ``driving_video``: the clip itself goes to
        ``POST /animations``, whose worker extracts its poses and keeps its sound in the MP4 unless
        ``audio=False`` (with ``video_start``/``video_end`` to cut it)."""
        request = self._submission(
            image, (poses, driving_video), source_pose, idempotency_key, webhook_url, webhook_events, params
        )
        return Job.model_validate(self._request("POST", "/animations", **request).json())

    def extract_poses(self, video: str | Path, parts: str | None = None) -> dict[str, Any]:
        """The server's pose sequence for a driving video (``POST /poses``); ``parts``: ``body``,
        ``body+hands``, ``body+face`` or ``full`` (the server's default: body, hands and face)."""
        try:
            return _poses_from(
                self._request("POST", "/poses", files=_video_files(video), data=_parts_field(parts))
            )
        except PoseAnimateError as exc:
            raise _unsupported(exc) from exc

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._request("GET", f"/animations/{job_id}").json())

    def list(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> JobList:
        query = _list_query(status, limit, cursor)
        return JobList.model_validate(self._request("GET", "/animations", params=query).json())

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._request("POST", f"/animations/{job_id}/cancel").json())

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/animations/{job_id}")

    def events(self, job_id: str, timeout: float = 600.0) -> Iterator[ProgressEvent | Job]:
        """The job's Server-Sent Events: ``ProgressEvent``s, then the final ``Job``."""
        with self._http.stream(
            "GET", f"/animations/{job_id}/events", timeout=httpx.Timeout(30.0, read=timeout)
        ) as stream:
            if stream.is_error:
                stream.read()
                raise PoseAnimateError.from_response(stream)
            parser = _SSEParser()
            for line in stream.iter_lines():
                if done := parser.feed(line):
                    yield _event(*done)
            if done := parser.close():
                yield _event(*done)

    def wait(
        self,
        job_id: str,
        on_progress: ProgressCallback | None = None,
        timeout: float = 900.0,
        poll_interval: float = 1.0,
    ) -> Job:
        """Follow the job until it ends (SSE; polling if the stream fails) and return it."""
        deadline = time.monotonic() + timeout
        try:
            for event in self.events(job_id, timeout=timeout):
                if isinstance(event, Job):
                    return event
                if on_progress:
                    on_progress(event)
        except (httpx.TransportError, ValueError):
            pass  # the stream broke or spoke nonsense: poll instead
        except PoseAnimateError as exc:
            _stream_fallback(exc)
        while True:
            job = self.get(job_id)
            if on_progress:
                on_progress(_polled(job))
            if job.status.is_terminal():
                return job
            if time.monotonic() > deadline:
                raise _wait_timeout(job_id, timeout)
            time.sleep(poll_interval)

    def download(self, job: Job | str, path: str | Path, what: str = "video") -> Path:
        """Save the job's output (``video`` or ``poster``) to ``path``."""
        job = self.get(job) if isinstance(job, str) else job
        url = _output_url(job, what)
        target = Path(path)
        client = self._http if self._same_origin(url) else httpx.Client(timeout=self._http.timeout)
        try:
            with client.stream("GET", url) as reply:
                if reply.is_error:
                    reply.read()
                    raise PoseAnimateError.from_response(reply)
                with target.open("wb") as out:
                    for chunk in reply.iter_bytes():
                        out.write(chunk)
        finally:
            if client is not self._http:
                client.close()
        return target


class AsyncPoseAnimateClient(_Base):
    """The same API on ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        max_retry_wait_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, max_retries=max_retries, max_retry_wait_s=max_retry_wait_s)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncPoseAnimateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            response = await self._http.request(method, path, **kwargs)
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                await asyncio.sleep(self._wait_s(response, attempt))
                continue
            if response.is_error:
                raise PoseAnimateError.from_response(response)
            return response
        raise AssertionError("unreachable")

    async def create(
        self,
        image: FileLike,
        poses: FileLike | dict[str, Any] | list[Any] | None = None,
        driving_video: str | Path | None = None,
        *,
        source_pose: FileLike | dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        **params: Any,
    ) -> Job:
        request = self._submission(
            image, (poses, driving_video), source_pose, idempotency_key, webhook_url, webhook_events, params
        )
        return Job.model_validate((await self._request("POST", "/animations", **request)).json())

    async def extract_poses(self, video: str | Path, parts: str | None = None) -> dict[str, Any]:
        try:
            reply = await self._request("POST", "/poses", files=_video_files(video), data=_parts_field(parts))
            return _poses_from(reply)
        except PoseAnimateError as exc:
            raise _unsupported(exc) from exc

    async def get(self, job_id: str) -> Job:
        return Job.model_validate((await self._request("GET", f"/animations/{job_id}")).json())

    async def list(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> JobList:
        query = _list_query(status, limit, cursor)
        return JobList.model_validate((await self._request("GET", "/animations", params=query)).json())

    async def cancel(self, job_id: str) -> Job:
        return Job.model_validate((await self._request("POST", f"/animations/{job_id}/cancel")).json())

    async def delete(self, job_id: str) -> None:
        await self._request("DELETE", f"/animations/{job_id}")

    async def events(self, job_id: str, timeout: float = 600.0) -> AsyncIterator[ProgressEvent | Job]:
        async with self._http.stream(
            "GET", f"/animations/{job_id}/events", timeout=httpx.Timeout(30.0, read=timeout)
        ) as stream:
            if stream.is_error:
                await stream.aread()
                raise PoseAnimateError.from_response(stream)
            parser = _SSEParser()
            async for line in stream.aiter_lines():
                if done := parser.feed(line):
                    yield _event(*done)
            if done := parser.close():
                yield _event(*done)

    async def wait(
        self,
        job_id: str,
        on_progress: ProgressCallback | None = None,
        timeout: float = 900.0,
        poll_interval: float = 1.0,
    ) -> Job:
        deadline = time.monotonic() + timeout
        try:
            async for event in self.events(job_id, timeout=timeout):
                if isinstance(event, Job):
                    return event
                if on_progress:
                    on_progress(event)
        except (httpx.TransportError, ValueError):
            pass
        except PoseAnimateError as exc:
            _stream_fallback(exc)
        while True:
            job = await self.get(job_id)
            if on_progress:
                on_progress(_polled(job))
            if job.status.is_terminal():
                return job
            if time.monotonic() > deadline:
                raise _wait_timeout(job_id, timeout)
            await asyncio.sleep(poll_interval)

    async def download(self, job: Job | str, path: str | Path, what: str = "video") -> Path:
        job = await self.get(job) if isinstance(job, str) else job
        url = _output_url(job, what)
        target = Path(path)
        client = self._http if self._same_origin(url) else httpx.AsyncClient(timeout=self._http.timeout)
        try:
            async with client.stream("GET", url) as reply:
                if reply.is_error:
                    await reply.aread()
                    raise PoseAnimateError.from_response(reply)
                with target.open("wb") as out:
                    async for chunk in reply.aiter_bytes():
                        out.write(chunk)
        finally:
            if client is not self._http:
                await client.aclose()
        return target
