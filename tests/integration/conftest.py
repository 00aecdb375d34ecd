"""The whole service on real parts, once per session: redis-server, a moto S3 server, a webhook
receiver, the API under uvicorn on a real socket, and ``poseanimate worker`` (gpu + io consumers)
running the tiny random-weight model on the CPU (``tests/integration/stack.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import Service, running_service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("service")) as svc:
        yield svc
