"""Readers shared by the deployment tests: YAML documents, the settings' variable names, the metrics
the code exports, the metric names a PromQL expression uses, and compose-style interpolation."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "production")

# Labels Prometheus adds to every scraped series (target labels), and the histogram bucket label.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "service", "endpoint"}
# Series Prometheus itself writes for every target.
PROMETHEUS_BUILTINS = {"up": set(), "scrape_duration_seconds": set()}


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------
def settings_env_names() -> set[str]:
    from jobs.settings import Settings

    return {f"POSEANIMATE_{name.upper()}" for name in Settings.model_fields}


def settings_from_env(env: dict[str, str]) -> Any:
    """Build the service's Settings from POSEANIMATE_* variables only (no .env, no process env)."""
    from jobs.settings import Settings

    fields = {
        k.removeprefix("POSEANIMATE_").lower(): v for k, v in env.items() if k.startswith("POSEANIMATE_")
    }
    return Settings(_env_file=None, **fields)


# ------------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------------
def kubectl() -> str | None:
    return shutil.which("kubectl")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay as `kubectl kustomize` renders it."""
    binary = kubectl()
    assert binary is not None
    out = subprocess.run(
        [binary, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def raw_manifests() -> list[dict[str, Any]]:
    """Every object in base/ and components/ as written (no kustomize: no patches, no generators)."""
    docs = []
    for path in sorted((K8S / "base").glob("*.yaml")) + sorted((K8S / "components").glob("*/*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(load_docs(path))
    return docs


def find(docs: Any, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Any, kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# ------------------------------------------------------------------------------------------------
# Celery's Redis lists
# ------------------------------------------------------------------------------------------------
def gpu_broker_lists() -> set[str]:
    """The Redis LIST names that can hold `gpu` messages, derived from the code's Celery config.

    kombu's Redis transport keeps one list per priority step: ``gpu`` for the lowest step and
    ``gpu<sep><step>`` for the others; only the priorities the code can send are counted.
    """
    from kombu.transport.redis import Channel

    from jobs.queue import GPU_QUEUE, celery_config
    from jobs.settings import Settings

    config = celery_config(Settings(_env_file=None))
    options = config.get("broker_transport_options") or {}
    assert not options.get("global_keyprefix"), "a global key prefix changes every list name KEDA watches"
    steps = sorted(options.get("priority_steps", Channel.priority_steps))
    sep = options.get("sep", Channel.sep)

    priorities = {config.get("task_default_priority") or 0}
    for route in (config.get("task_routes") or {}).values():
        if isinstance(route, dict) and route.get("priority") is not None:
            priorities.add(int(route["priority"]))
    if config.get("task_queue_max_priority") or config.get("task_inherit_parent_priority"):
        priorities.update(range(10))

    def list_for(priority: int) -> str:
        step = max(s for s in steps if s <= priority) if any(s <= priority for s in steps) else steps[0]
        return f"{GPU_QUEUE}{sep}{step}" if step else GPU_QUEUE

    return {list_for(p) for p in priorities}


# ------------------------------------------------------------------------------------------------
# Metrics: what the code exports, what PromQL asks for
# ------------------------------------------------------------------------------------------------
class _FakeStore:
    def queue_depth(self) -> int:
        return 0

    def running_count(self) -> int:
        return 0

    def oldest_queued_age(self, now: float) -> float:
        return 0.0


class _FakeQueue:
    def broker_queue_length(self, queue: str = "gpu") -> int:
        return 0


def _wrapper_samples(metric: Any) -> dict[str, set[str]]:
    name, kind, labels = metric._name, metric._type, set(metric._labelnames)
    if kind == "counter":
        return {f"{name}_total": labels, f"{name}_created": labels}
    if kind == "histogram":
        return {
            f"{name}_bucket": labels | {"le"},
            f"{name}_sum": labels,
            f"{name}_count": labels,
            f"{name}_created": labels,
        }
    if kind == "summary":
        return {name: labels | {"quantile"}, f"{name}_sum": labels, f"{name}_count": labels}
    return {name: labels}


@cache
def exported_metrics() -> dict[str, frozenset[str]]:
    """Sample name -> label names, for every metric of api/metrics.py and worker/metrics.py."""
    from prometheus_client.metrics import MetricWrapperBase

    import worker.metrics as worker_metrics
    from api.metrics import ApiMetrics

    out: dict[str, set[str]] = {}
    wrappers = [v for v in vars(worker_metrics).values() if isinstance(v, MetricWrapperBase)]
    api = ApiMetrics(_FakeStore(), _FakeQueue())  # type: ignore[arg-type]
    wrappers += [v for v in vars(api).values() if isinstance(v, MetricWrapperBase)]
    for metric in wrappers:
        out.update(_wrapper_samples(metric))
    # Custom collectors (queue gauges read at scrape time): their samples, as a scrape sees them.
    wrapper_names = {m._name for m in wrappers}
    for family in api.registry.collect():
        if family.name in wrapper_names:
            continue
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in out.items()}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}  # fmt: skip


def promql_selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) for every series selector in a PromQL expression."""
    text = _RANGE.sub("", _STRING.sub('""', expr))
    found: list[tuple[str, set[str]]] = []

    def selector(match: re.Match[str]) -> str:
        labels = {m.split("=")[0].split("!")[0].strip() for m in match.group(2).split(",") if m.strip()}
        if match.group(1) is None:
            labels.discard("__name__")
        found.append((match.group(1) or "", labels))
        return " "

    text = _GROUPING.sub(" ", _SELECTOR.sub(selector, text))
    for name, call in _IDENT.findall(text):
        if not call and name.lower() not in _KEYWORDS:
            found.append((name, set()))
    return found


def promql_grouping_labels(expr: str) -> set[str]:
    """Label names in ``by (...)``, ``without (...)``, ``on (...)``, ``ignoring (...)``, ``group_*(...)``."""
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    for match in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels.update(part.strip() for part in match.group(1).split(",") if part.strip())
    return labels


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    import json

    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        panels = list(dashboard["panels"])
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                yield f"{path.name}: {panel['title']}", target["expr"]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# ------------------------------------------------------------------------------------------------
# Compose
# ------------------------------------------------------------------------------------------------
_INTERPOLATION = re.compile(
    r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        current = env.get(name)
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise KeyError(f"required variable {name} is missing: {arg}")
        if op in (":-", "-") and (current is None or (op == ":-" and current == "")):
            return arg
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env
