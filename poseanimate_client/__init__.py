"""The public Python client of the PoseAnimate HTTP API.

    from poseanimate_client import PoseAnimateClient  # AsyncPoseAnimateClient: the same, async

Torch-free: httpx and pydantic, plus the API's contract models (``jobs.contract``); nothing else of the
service (an import contract in pyproject.toml says so).
"""

from poseanimate_client.client import AsyncPoseAnimateClient, PoseAnimateClient, PoseAnimateError

__all__ = ["AsyncPoseAnimateClient", "PoseAnimateClient", "PoseAnimateError"]
