"""Where the weights come from: a hub id, a local pipeline directory, or the tiny random model."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from engine.inputs.models import DEFAULT_BASE, DEFAULT_CONTROLNET, is_random_weights
from engine.weights.tiny import build_tiny_model

TINY = "tiny"


def resolve_model(
    spec: str | None, controlnet: str | None = None, *, tiny_dir: str | Path
) -> tuple[str, str]:
    """Map a model spec to ``(base, controlnet)`` for ``PoseAnimator.from_pretrained``.

    - ``"tiny"``: the random-weight smoke-test model, built once into ``tiny_dir`` (atomically, so
      concurrent workers never see half a model);
    - a local directory: SD-1.5 components, with the ControlNet from its ``controlnet/`` folder when
      it has one;
    - anything else: a hub id (``None`` = the SD-1.5 default), with the OpenPose ControlNet default.
    """
    spec = spec or DEFAULT_BASE
    if spec == TINY:
        target = Path(tiny_dir)
        if not is_random_weights(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
            try:
                build_tiny_model(staging / "model")
                try:
                    os.replace(staging / "model", target)
                except OSError:
                    if not is_random_weights(target):  # lost a race to a half-made dir? surface it
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return str(target), controlnet or str(target / "controlnet")
    local = Path(spec).expanduser()
    if local.is_dir():
        own = local / "controlnet"
        return str(local), controlnet or (str(own) if own.is_dir() else DEFAULT_CONTROLNET)
    return spec, controlnet or DEFAULT_CONTROLNET
