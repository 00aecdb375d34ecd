"""Shared fixtures: the tiny random-weight model (built once per session) and small helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from jobs.store import JobStore
from tests.support.servers import MissingService, RedisServer, redis_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SD + OpenPose-ControlNet model saved in the diffusers layout."""
    from engine.weights.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server on a free port for the whole test run; tests isolate by key prefix."""
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as server:
            yield server
    except MissingService as exc:  # raised before the yield: the binary is not installed
        pytest.skip(str(exc))


@pytest.fixture
def redis_client(redis_srv: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_srv.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    """A job store on the session's Redis under a fresh key prefix."""
    return JobStore(redis_client, prefix=f"t{uuid.uuid4().hex[:8]}", job_ttl_s=3600)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Chaos tests (minutes of killed processes and outages) run only when selected: `make chaos`."""
    if "chaos" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="chaos test: run with `make chaos` (pytest -m chaos)")
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(skip)
