"""Kubernetes manifests (deploy/k8s): every overlay renders, objects have their required fields and
point at each other, the GPU workers shut down gracefully, KEDA watches the list the code writes,
and the configuration is made of settings the service knows."""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.manifests import (
    DEPLOY,
    K8S,
    OVERLAYS,
    find,
    gpu_broker_lists,
    kubectl,
    load_docs,
    one,
    raw_manifests,
    render,
    settings_env_names,
    settings_from_env,
)

NAMESPACE = "poseanimate"
PRIVATE_V4 = {
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "100.64.0.0/10",
}
NEEDS_KUBECTL = pytest.mark.skipif(
    kubectl() is None, reason="kubectl is not installed: overlays not rendered"
)


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    if kubectl() is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` cannot render the overlays")
    return render(request.param)


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = _pod(deployment)["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _config(docs: Any) -> dict[str, str]:
    """ConfigMap + Secret data, as the pods see them (Secret values decoded)."""
    env: dict[str, str] = dict(one(docs, "ConfigMap", "poseanimate-config")["data"])
    for secret in find(docs, "Secret"):
        env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
        env.update(secret.get("stringData", {}))
    return env


# ------------------------------------------------------------------------------------------------
# Every file parses; every object is well-formed
# ------------------------------------------------------------------------------------------------
def test_every_manifest_file_parses() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        for doc in load_docs(path):
            assert "kind" in doc and "apiVersion" in doc, f"{path}: object without kind/apiVersion"
            if doc["kind"] not in ("Kustomization", "Component"):
                assert doc["metadata"]["name"], path


def test_raw_objects_have_required_fields() -> None:
    for doc in raw_manifests():
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "StatefulSet"):
            spec = doc["spec"]
            assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
            for container in spec["template"]["spec"]["containers"]:
                assert container["image"] and container["resources"]["requests"]


def test_overlay_renders_the_full_set(docs: Any) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {
        ("Deployment", "poseanimate-api"),
        ("Service", "poseanimate-api"),
        ("HorizontalPodAutoscaler", "poseanimate-api"),
        ("PodDisruptionBudget", "poseanimate-api"),
        ("Deployment", "poseanimate-worker-gpu"),
        ("ScaledObject", "poseanimate-worker-gpu"),
        ("Deployment", "poseanimate-worker-io"),
        ("StatefulSet", "poseanimate-redis"),
        ("Service", "poseanimate-redis"),
        ("ConfigMap", "poseanimate-config"),
        ("NetworkPolicy", "poseanimate-worker-io"),
        ("NetworkPolicy", "poseanimate-api"),
    }
    assert expected <= kinds, sorted(expected - kinds)
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


@NEEDS_KUBECTL
def test_production_has_monitoring_objects() -> None:
    docs = render("production")
    assert find(docs, "ServiceMonitor") and find(docs, "PodMonitor") and find(docs, "PrometheusRule")
    assert not find(docs, "Secret"), "production secrets must not be generated from git"
    claim = one(docs, "PersistentVolumeClaim", "poseanimate-models")
    volumes = _pod(one(docs, "Deployment", "poseanimate-worker-gpu"))["volumes"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes


def test_workloads_reference_existing_objects(docs: Any) -> None:
    api = one(docs, "Deployment", "poseanimate-api")
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service", "poseanimate-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in _container(api)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert (
        one(docs, "HorizontalPodAutoscaler", "poseanimate-api")["spec"]["scaleTargetRef"]["name"]
        == "poseanimate-api"
    )
    for pdb in find(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in find(docs, "Deployment")
        ), pdb["metadata"]["name"]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for deployment in find(docs, "Deployment"):
        for source in _container(deployment).get("envFrom", []):
            if "configMapRef" in source:
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            elif "secretRef" in source and find(docs, "Secret"):
                assert ("Secret", source["secretRef"]["name"]) in names


def test_pods_run_unprivileged(docs: Any) -> None:
    for workload in find(docs, "Deployment") + find(docs, "StatefulSet"):
        pod = _pod(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        container = _container(workload)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


# ------------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------------
def test_api_probes_and_graceful_stop(docs: Any) -> None:
    api = one(docs, "Deployment", "poseanimate-api")
    container = _container(api)
    assert container["args"][0] == "serve"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]
    assert _pod(api)["terminationGracePeriodSeconds"] >= 35  # preStop + uvicorn's 30 s
    hpa = one(docs, "HorizontalPodAutoscaler", "poseanimate-api")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


# ------------------------------------------------------------------------------------------------
# GPU workers
# ------------------------------------------------------------------------------------------------
def test_gpu_worker_requests_one_a100(docs: Any) -> None:
    worker = one(docs, "Deployment", "poseanimate-worker-gpu")
    container = _container(worker)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    pod = _pod(worker)
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    products = [v for t in terms for e in t["matchExpressions"] for v in e["values"]]
    assert products and all("A100" in p for p in products)
    assert pod["nodeSelector"]


def test_gpu_worker_warm_shutdown_outlasts_the_hard_time_limit(docs: Any) -> None:
    worker = one(docs, "Deployment", "poseanimate-worker-gpu")
    settings = settings_from_env(_config(docs))
    args = _container(worker)["args"]
    assert args[args.index("--queues") + 1] == "gpu"
    shutdown = float(args[args.index("--shutdown-timeout") + 1])
    grace = _pod(worker)["terminationGracePeriodSeconds"]
    assert settings.hard_time_limit_s < shutdown < grace
    assert settings.visibility_timeout_s > grace  # Redis must not redeliver a job still finishing


def test_io_worker_runs_torch_free_and_consumes_io(docs: Any) -> None:
    io = one(docs, "Deployment", "poseanimate-worker-io")
    container = _container(io)
    assert container["args"][:3] == ["worker", "--queues", "io"]
    api_image = _container(one(docs, "Deployment", "poseanimate-api"))["image"]
    assert container["image"] == api_image
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


# ------------------------------------------------------------------------------------------------
# KEDA
# ------------------------------------------------------------------------------------------------
def test_keda_watches_the_list_the_code_writes(docs: Any) -> None:
    scaled = one(docs, "ScaledObject", "poseanimate-worker-gpu")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "poseanimate-worker-gpu"
    redis_triggers = [t for t in spec["triggers"] if t["type"] == "redis"]
    assert {t["metadata"]["listName"] for t in redis_triggers} == gpu_broker_lists()
    assert gpu_broker_lists() == {"gpu"}  # today: no priorities, so no kombu priority sub-lists

    # The trigger reads the same Redis (host, port, database) as the service.
    url = urlsplit(settings_from_env(_config(docs)).redis_url)
    for trigger in redis_triggers:
        host, port = trigger["metadata"]["address"].rsplit(":", 1)
        assert host.split(".")[0] == url.hostname
        assert host in (
            url.hostname,
            f"{url.hostname}.{NAMESPACE}.svc.cluster.local",
            f"{url.hostname}.{NAMESPACE}.svc",
        )
        assert int(port) == (url.port or 6379)
        assert int(trigger["metadata"]["databaseIndex"]) == int(url.path.strip("/") or 0)
        assert trigger["metadata"]["listLength"] == "1"  # one job per GPU


def test_keda_formula_uses_named_triggers_and_sane_bounds(docs: Any) -> None:
    spec = one(docs, "ScaledObject", "poseanimate-worker-gpu")["spec"]
    names = {t["name"] for t in spec["triggers"]}
    formula = spec["advanced"]["scalingModifiers"]["formula"]
    assert names == {"waiting", "running"} and all(n in formula for n in names)
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    assert "replicas" not in one(docs, "Deployment", "poseanimate-worker-gpu")["spec"]  # KEDA owns it


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
def test_config_names_are_settings_and_values_validate(docs: Any) -> None:
    known = settings_env_names()
    env = _config(docs)
    unknown = {k for k in env if k.startswith("POSEANIMATE_")} - known
    assert not unknown, f"not settings of jobs/settings.py: {sorted(unknown)}"
    for deployment in find(docs, "Deployment"):
        names = {e["name"] for e in _container(deployment).get("env", [])}
        bad = {n for n in names if n.startswith("POSEANIMATE_")} - known
        assert not bad, f"{deployment['metadata']['name']}: {sorted(bad)}"
    settings = settings_from_env(env)
    assert settings.storage_url.startswith("s3://") and settings.auth_enabled
    assert not settings.allow_private_urls


@NEEDS_KUBECTL
def test_dev_secret_holds_what_the_service_needs() -> None:
    env = _config(render("dev"))
    for name in ("POSEANIMATE_API_KEYS", "POSEANIMATE_WEBHOOK_SECRET", "POSEANIMATE_LINK_SIGNING_SECRET"):
        assert env.get(name), name
    settings_from_env(env)


# ------------------------------------------------------------------------------------------------
# Network policies
# ------------------------------------------------------------------------------------------------
def _egress_blocks(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        peer["ipBlock"]
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    ]


@pytest.mark.parametrize("name", ["poseanimate-worker-io", "poseanimate-api"])
def test_url_fetchers_cannot_reach_private_or_metadata_addresses(docs: Any, name: str) -> None:
    policy = one(docs, "NetworkPolicy", name)
    assert "Egress" in policy["spec"]["policyTypes"]
    blocks = _egress_blocks(policy)
    assert blocks
    for block in blocks:
        if block["cidr"] == "0.0.0.0/0":
            assert set(block["except"]) >= PRIVATE_V4
        else:
            assert block["cidr"] == "::/0" and {"fc00::/7", "fe80::/10"} <= set(block["except"])
    default_deny = one(docs, "NetworkPolicy", "poseanimate-default-deny")
    assert default_deny["spec"]["podSelector"] == {} and set(default_deny["spec"]["policyTypes"]) == {
        "Ingress",
        "Egress",
    }


# ------------------------------------------------------------------------------------------------
# Monitoring objects
# ------------------------------------------------------------------------------------------------
def test_prometheus_rule_matches_alerts_file() -> None:
    out = subprocess.run(
        [sys.executable, str(DEPLOY / "prometheus" / "sync_rules.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_scrape_jobs_match_the_dashboard_job_names() -> None:
    raw = {(d["kind"], d["metadata"]["name"]): d for d in raw_manifests()}
    jobs = {
        d["spec"]["template"]["metadata"]["labels"]["poseanimate.dev/scrape-job"]
        for (kind, _), d in raw.items()
        if kind == "Deployment"
    }
    assert jobs == {"poseanimate-api", "poseanimate-worker-gpu", "poseanimate-worker-io"}
    assert raw[("PodMonitor", "poseanimate-workers")]["spec"]["jobLabel"] == "poseanimate.dev/scrape-job"
    service = raw[("Service", "poseanimate-api")]
    assert service["metadata"]["labels"]["poseanimate.dev/scrape-job"] == "poseanimate-api"


def test_every_app_pod_requires_its_own_link_signing_secret(docs: Any) -> None:
    for deployment in find(docs, "Deployment"):
        if deployment["metadata"]["name"].startswith("poseanimate-redis"):
            continue
        env = {e["name"]: e for e in _container(deployment).get("env", [])}
        ref = env["POSEANIMATE_LINK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]
        # The dev overlay generates the Secret, so kustomize adds a content hash to its name.
        assert ref["name"].startswith("poseanimate-secrets") and not ref.get("optional"), deployment[
            "metadata"
        ]["name"]
