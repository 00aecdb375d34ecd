"""The engine's inversion cache, backed by object storage so GPU workers share avatars.

A job on an avatar another worker already inverted (same image, prompt, source pose, model and
sampling settings: the engine's cache key) skips the whole ``inverting`` stage. Entries are the
engine's safetensors blobs (no pickle) under ``cache/inversions/{key}.safetensors``, about 10 MB at
512 px and 50 steps; give that prefix a lifecycle rule on S3. The process-local LRU answers first;
storage trouble only ever costs a miss, never a job.

Imported only inside the worker process that runs jobs (it pulls in torch through the engine).
"""

from __future__ import annotations

import logging
from typing import Any

from engine.method.cache import MemoryInversionCache, dumps_inversion, loads_inversion
from jobs.deletion import record_cache_key
from jobs.storage import ObjectNotFound, Storage, StorageUnavailable

log = logging.getLogger(__name__)
PREFIX = "cache/inversions"


class StorageInversionCache:
    def __init__(self, storage: Storage, memory: MemoryInversionCache) -> None:
        self.storage = storage
        self.memory = memory

    @staticmethod
    def key_path(key: str) -> str:
        return f"{PREFIX}/{key}.safetensors"

    def get(self, key: str) -> Any:
        value = self.memory.get(key)
        if value is not None:
            record_cache_key(key)  # this job's image led here: DELETE of the job removes the entry
            return value
        try:
            value = loads_inversion(self.storage.get_bytes(self.key_path(key)))
        except ObjectNotFound:
            return None
        except (StorageUnavailable, ValueError) as exc:  # outage or a foreign/old entry: recompute
            log.warning("inversion cache read failed", extra={"error": str(exc)[:200]})
            return None
        self.memory.put(key, value)
        record_cache_key(key)
        return value

    def put(self, key: str, value: Any) -> None:
        self.memory.put(key, value)
        record_cache_key(key)
        try:
            self.storage.put_bytes(self.key_path(key), dumps_inversion(value), "application/octet-stream")
        except StorageUnavailable as exc:
            log.warning("inversion cache write failed", extra={"error": str(exc)[:200]})
