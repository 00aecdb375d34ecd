"""Deployment tests: compose, Kubernetes manifests, dashboards/alerts and images, checked against the
code they deploy (settings names, queue names, exported metrics). Fast; no Docker engine or cluster."""

from __future__ import annotations
