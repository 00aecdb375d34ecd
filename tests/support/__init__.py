"""Shared test support: test launchers (moto S3, webhook receiver, fault proxy, the in-process test
stack; Redis and the process command lines come from ``launch``), payload builders, fixtures helpers.
Used by the tests only (bench/ and `make up` use ``launch``); never a test module."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
