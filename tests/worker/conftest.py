"""Worker-package fixtures: a real redis-server for the session, a fresh key prefix per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the shared server helpers live in tests/integration
    sys.path.insert(0, str(REPO_ROOT))
from tests.integration.servers import RedisServer, redis_server  # noqa: E402
from worker.store import JobStore  # noqa: E402


@pytest.fixture(scope="session")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_srv: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_srv.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, prefix=f"t{uuid.uuid4().hex[:8]}", job_ttl_s=3600)
