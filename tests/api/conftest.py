"""API fixtures: a real redis-server (session), local storage, the app under TestClient."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from jobs.settings import Settings
from tests.support.api import KEY_A, KEY_B
from tests.support.servers import RedisServer


@pytest.fixture
def make_settings(redis_srv: RedisServer, tmp_path: Path) -> Callable[..., Settings]:
    broker_url = redis_srv.url.replace("/0", "/1")
    with redis.Redis.from_url(broker_url) as broker:
        broker.flushdb()  # Celery queue names are global: start each test with empty queues

    def make(**overrides: object) -> Settings:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        values: dict[str, object] = {
            "redis_url": redis_srv.url,
            "broker_url": broker_url,
            "key_prefix": prefix,
            "storage_url": f"file://{tmp_path}/storage",
            "api_keys": [KEY_A, KEY_B],
            "allow_private_urls": False,
            "link_signing_secret": "test-link-secret",
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., TestClient]]:
    from api.main import create_app

    clients: list[TestClient] = []

    def make(settings: Settings | None = None, key: str | None = KEY_A, **kwargs: object) -> TestClient:
        app = create_app(settings or make_settings(), **kwargs)  # type: ignore[arg-type]
        client = TestClient(app, raise_server_exceptions=False)
        if key:
            client.headers["Authorization"] = f"Bearer {key}"
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
