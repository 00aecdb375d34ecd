"""Deprecated: the client is the ``poseanimate_client`` package now (``from poseanimate_client import
PoseAnimateClient``). This module re-exports it, with a ``DeprecationWarning``, for one release."""

import warnings

from poseanimate_client.client import AsyncPoseAnimateClient, PoseAnimateClient, PoseAnimateError

__all__ = ["AsyncPoseAnimateClient", "PoseAnimateClient", "PoseAnimateError"]

warnings.warn(
    "`cli.client` is deprecated and will be removed in the next release: "
    "use `from poseanimate_client import PoseAnimateClient` (and AsyncPoseAnimateClient, PoseAnimateError)",
    DeprecationWarning,
    stacklevel=2,
)
