"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis), on the
real app and a real Redis: for every operation, generated requests (valid and invalid) never get a
5xx, and every response conforms to the schema (status code documented, content type, body, headers).

Not checked: that every schema-valid request is accepted (a valid-looking image URL still fails
its fetch) and that every schema-violating one is refused (unknown query parameters are ignored).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from api.main import create_app
from jobs.settings import Settings
from tests.support.api import KEY_A

# The operations, read from the schema of an app that needs no Redis to describe itself.
_SPEC = create_app(Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0", env="development")).openapi()
OPERATIONS = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode}")
    for path, ops in _SPEC["paths"].items()
    for method, op in ops.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    # nothing to make invalid in an operation without parameters or body
    if mode is GenerationMode.POSITIVE or op.get("parameters") or op.get("requestBody")
]
# FUZZ_EXAMPLES=1000 for a longer run than `make test`'s
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
LENIENT = [negative_data_rejection, positive_data_acceptance]


def no_dns(host: str, port: int) -> list[str]:
    raise OSError("fuzzed hosts are never resolved")  # no network and no waiting: url_unresolvable


@pytest.mark.parametrize("method,path,mode", OPERATIONS)
def test_no_5xx_and_every_response_conforms_to_the_schema(make_settings, make_client, method, path, mode):
    client = make_client(
        make_settings(
            rate_limit_requests_per_minute=1_000_000,
            rate_limit_submissions_per_minute=1_000_000,
            max_active_jobs=100_000,
        ),
        resolver=no_dns,
    )
    operation = schemathesis.openapi.from_asgi("/openapi.json", client.app)[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: schemathesis.Case) -> None:
        # `Prefer: wait=N` would only hold replies for up to a minute (no worker runs here).
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "prefer"}
        case.headers = headers
        case.call_and_validate(
            headers={"Authorization": f"Bearer {KEY_A}", **headers}, excluded_checks=LENIENT
        )

    fuzz()
