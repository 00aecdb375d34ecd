"""The job lock: ``SET NX PX`` with a random token, refreshed by the running worker's heartbeat.

A redelivered copy of a running job finds the lock taken and leaves the job to its holder; a dead
worker's lock expires after its TTL, so the job can run again (as a new attempt).
"""

from __future__ import annotations

from typing import Any


class JobLocks:
    """Mixin of ``JobStore``: needs ``self.r``, ``self.lock_key`` and the two lock scripts."""

    r: Any
    _lock_refresh: Any
    _lock_release: Any

    def lock_key(self, job_id: str) -> str:
        raise NotImplementedError

    def try_lock(self, job_id: str, token: str, ttl_s: float) -> bool:
        return bool(self.r.set(self.lock_key(job_id), token, nx=True, px=int(ttl_s * 1000)))

    def refresh_lock(self, job_id: str, token: str, ttl_s: float) -> bool:
        return bool(int(self._lock_refresh(keys=[self.lock_key(job_id)], args=[token, int(ttl_s * 1000)])))

    def release_lock(self, job_id: str, token: str) -> None:
        self._lock_release(keys=[self.lock_key(job_id)], args=[token])
