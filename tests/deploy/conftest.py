"""Deployment tests: compose, Kubernetes manifests, dashboards/alerts and images, checked against the
code they deploy (settings names, queue names, exported metrics). Fast; no Docker engine or cluster."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `from tests.deploy.manifests import ...`
    sys.path.insert(0, str(REPO_ROOT))
