"""Dashboards and alerts point at metrics the code exports, with labels those metrics carry; the
alert rules pass promtool (syntax and unit tests) where promtool is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.manifests import (
    DEPLOY,
    PROMETHEUS_BUILTINS,
    TARGET_LABELS,
    alert_rules,
    dashboard_exprs,
    exported_metrics,
    promql_grouping_labels,
    promql_selectors,
    raw_manifests,
)

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "poseanimate.json"


def _keda_queries() -> list[tuple[str, str]]:
    return [
        (f"ScaledObject {d['metadata']['name']}: {t['name']}", t["metadata"]["query"])
        for d in raw_manifests()
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
        if t["type"] == "prometheus"
    ]


def _all_exprs() -> list[tuple[str, str]]:
    return (
        list(dashboard_exprs())
        + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
        + _keda_queries()
    )


def test_promql_reader_finds_metrics_and_labels() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le, stage) (rate(poseanimate_job_stage_duration_seconds_bucket"
        '{stage!~"a|b"}[$__rate_interval]))) > 1e3 and on () max(poseanimate_queue_jobs) or vector(0)'
    )
    assert promql_selectors(expr) == [
        ("poseanimate_job_stage_duration_seconds_bucket", {"stage"}),
        ("poseanimate_queue_jobs", set()),
    ]
    assert promql_selectors('count(up{job="x"} == 1)') == [("up", {"job"})]
    assert promql_grouping_labels(expr) == {"le", "stage"}


def test_every_metric_used_is_exported_by_the_code() -> None:
    exported = exported_metrics()
    known = {**exported, **PROMETHEUS_BUILTINS}
    used = 0
    for where, expr in _all_exprs():
        selectors = promql_selectors(expr)
        assert selectors, f"{where}: no metric in {expr!r}"
        for name, labels in selectors:
            used += 1
            assert name in known, f"{where}: {name} is not exported by api/metrics.py or worker/metrics.py"
            unknown = labels - set(known[name]) - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label(s) {sorted(unknown)}"
        carried = set().union(*(known[name] for name, _ in selectors)) | TARGET_LABELS
        grouped = promql_grouping_labels(expr) - carried
        assert not grouped, f"{where}: grouping by label(s) no metric here has: {sorted(grouped)}"
    assert used > 40


def test_dashboard_covers_the_operations_questions() -> None:
    names = {name for _, expr in dashboard_exprs() for name, _ in promql_selectors(expr)}
    for needed in (
        "poseanimate_http_requests_total",  # request rate and errors
        "poseanimate_http_request_duration_seconds_bucket",  # latency
        "poseanimate_queue_jobs",  # queue depth
        "poseanimate_broker_queue_messages",
        "poseanimate_job_queue_wait_seconds_bucket",  # queue wait
        "poseanimate_jobs_finished_total",  # jobs by outcome
        "poseanimate_job_stage_duration_seconds_bucket",  # per-stage percentiles
        "poseanimate_gpu_memory_peak_bytes",  # GPU memory
        "poseanimate_memory_predicted_peak_bytes",  # the memory plan against the measured peaks
        "poseanimate_memory_actual_peak_bytes",
        "poseanimate_memory_peak_ratio",
        "poseanimate_memory_oom_backoffs_total",
        "poseanimate_memory_offloads_total",
        "poseanimate_webhook_deliveries_total",  # webhook failures
        "up",  # worker count
    ):
        assert needed in names, f"the dashboard does not show {needed}"


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_alerts_cover_the_failure_modes() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for needed in (
        "PoseAnimateQueueWaitHigh",
        "PoseAnimateJobFailureRatioHigh",
        "PoseAnimateNoGpuWorkers",
        "PoseAnimateWebhookFailureRatioHigh",
        "PoseAnimateApi5xxRatioHigh",
    ):
        assert needed in rules
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus); the rules are parsed above"
        )
    return binary


def test_promtool_checks_the_rules_and_the_compose_scrape_config(tmp_path: Path) -> None:
    promtool = _promtool()
    rules = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The compose file mounts alerts.yml at /etc/prometheus/; point the copy at the repo's file.
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/alerts.yml", str(DEPLOY / "prometheus" / "alerts.yml"))
    )
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_fire_each_alert() -> None:
    promtool = _promtool()
    out = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
