"""Reuse of the source-side PACM results (``Z_0..Z_T`` and ``{O_{s,t}}``) across jobs.

Apps re-animate the same avatar with many motions; everything in DDIM inversion and pose-aware
inversion depends only on the image, prompt, source pose, model and sampling settings, so a second
job on the same avatar can skip the whole ``inverting`` stage. The engine ships an in-memory LRU;
``dumps_inversion`` / ``loads_inversion`` (safetensors, no pickle) let a service back the cache with
its own storage.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Protocol

import numpy as np
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from engine.method.config import AnimateConfig
from engine.method.pacm import SourceInversion
from engine.poses.pose import Pose

CACHE_VERSION = "1"

# Settings the source-side results depend on (and nothing else: frame-side knobs never miss the cache).
_KEY_FIELDS = (
    "num_inference_steps",
    "guidance_scale",
    "height",
    "width",
    "controlnet_conditioning_scale",
    "use_pacm",
    "inversion_inner_steps",
    "inversion_lr",
    "inversion_early_stop",
)


class InversionCache(Protocol):
    def get(self, key: str) -> SourceInversion | None: ...

    def put(self, key: str, value: SourceInversion) -> None: ...


def inversion_cache_key(
    image: Image.Image, prompt: str, source_pose: Pose, model: dict[str, object], config: AnimateConfig
) -> str:
    """sha256 over the prepared (resized) image pixels, prompt, source pose on the output canvas, model
    identity and the source-side settings."""
    h = hashlib.sha256()
    h.update(f"poseanimate-inversion-v{CACHE_VERSION}\0".encode())
    rgb = image.convert("RGB")
    h.update(f"{rgb.size}".encode())
    h.update(rgb.tobytes())
    h.update(prompt.encode("utf-8") + b"\0")
    h.update(np.ascontiguousarray(source_pose.keypoints, dtype=np.float64).tobytes())
    h.update(f"{source_pose.width}x{source_pose.height}".encode())
    ident = {k: model.get(k) for k in ("base", "controlnet", "dtype", "revision")}
    settings = {k: getattr(config, k) for k in _KEY_FIELDS}
    h.update(json.dumps([ident, settings], sort_keys=True, default=str).encode())
    return h.hexdigest()


def inversion_nbytes(value: SourceInversion) -> int:
    tensors = (value.latents, value.embeddings, value.reconstruction)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class MemoryInversionCache:
    """Thread-safe LRU bounded by entries and bytes. Values are kept on the CPU."""

    def __init__(self, max_entries: int = 32, max_bytes: int = 2 * 1024**3) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, SourceInversion] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> SourceInversion | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: SourceInversion) -> None:
        value = value.to("cpu")
        size = inversion_nbytes(value)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= inversion_nbytes(old)
            self._items[key] = value
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= inversion_nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


def dumps_inversion(value: SourceInversion) -> bytes:
    """Serialise with safetensors (no pickle)."""
    tensors = {"latents": value.latents.detach().cpu().contiguous()}
    if value.embeddings is not None:
        tensors["embeddings"] = value.embeddings.detach().cpu().contiguous()
    if value.reconstruction is not None:
        tensors["reconstruction"] = value.reconstruction.detach().cpu().contiguous()
    meta = {"version": CACHE_VERSION, "final_losses": json.dumps(value.final_losses)}
    return st_save(tensors, metadata=meta)


def loads_inversion(data: bytes) -> SourceInversion:
    tensors = st_load(data)
    meta = _metadata(data)
    if meta.get("version") != CACHE_VERSION:
        raise ValueError("inversion cache entry has another format version")
    return SourceInversion(
        latents=tensors["latents"],
        embeddings=tensors.get("embeddings"),
        reconstruction=tensors.get("reconstruction"),
        final_losses=list(json.loads(meta.get("final_losses", "[]"))),
    )


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then a JSON header with __metadata__.
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return dict(header.get("__metadata__", {}))
