"""Shared test support: process launchers (Redis, moto S3, webhook receiver, the API and workers),
payload builders, fixtures helpers. Used by the tests, bench/ and `make up` alike; never a test module."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
