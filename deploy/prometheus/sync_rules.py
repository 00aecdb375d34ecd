"""Write the Kubernetes PrometheusRule from ``alerts.yml``, the one source of the alert rules.

python deploy/prometheus/sync_rules.py          # rewrite the PrometheusRule
python deploy/prometheus/sync_rules.py --check  # exit 1 if it is out of date (tests/deploy)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yml"
RULE = HERE.parent / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# GENERATED from deploy/prometheus/alerts.yml by deploy/prometheus/sync_rules.py: edit alerts.yml,\n"
    "# then run the script. tests/deploy fails when the two differ.\n"
)


class _Literal(str):
    pass


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


def render() -> str:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            rule["expr"] = _Literal(rule["expr"].rstrip("\n") + "\n")
    rule_object = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "poseanimate", "labels": {"release": "kube-prometheus-stack"}},
        "spec": {"groups": groups},
    }
    yaml.SafeDumper.add_representer(_Literal, _literal)
    return HEADER + yaml.safe_dump(rule_object, sort_keys=False, width=120, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report whether the file is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = RULE.read_text() if RULE.exists() else ""
        if current != text:
            print(f"{RULE} is out of date: run python deploy/prometheus/sync_rules.py", file=sys.stderr)
            return 1
        return 0
    RULE.write_text(text)
    print(f"wrote {RULE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
